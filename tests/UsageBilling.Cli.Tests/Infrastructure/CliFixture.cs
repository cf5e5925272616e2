using System.Text.Json.Nodes;
using Microsoft.EntityFrameworkCore;
using Stripe;
using Stripe.Billing;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.StripeEmulator;

namespace UsageBilling.Cli.Tests.Infrastructure;

/// <summary>One test's world: a fresh database, an in-process Stripe emulator, and a working folder with an appsettings.json.</summary>
public sealed class CliWorld : IAsyncDisposable
{
    public const string AppSettings = """
        {
          "UsageBilling": {
            "Meters": {
              "ai_messages": { "DisplayName": "AI messages", "Unit": "messages" },
              "api_calls": { "DisplayName": "API calls" }
            },
            "Plans": {
              "starter": {
                "DisplayName": "Starter",
                "MonthlyPrice": 19,
                "Meters": {
                  "ai_messages": { "Included": 100, "UnitPrice": 0.02 },
                  "api_calls": { "Included": 1000, "Tiers": [ { "UpTo": 5000, "UnitAmount": 0.01 }, { "UnitAmount": 0.005 } ] }
                }
              }
            }
          }
        }
        """;

    private CliWorld(TestDatabase database, StripeEmulatorServer emulator, string folder)
    {
        Database = database;
        Emulator = emulator;
        Folder = folder;
        Stripe = new StripeClient(new StripeClientOptions { ApiKey = "sk_test_cli_tests", ApiBase = emulator.ApiBase, MeterEventsBase = emulator.ApiBase });
    }

    public TestDatabase Database { get; }

    public StripeEmulatorServer Emulator { get; }

    public string Folder { get; }

    public StripeClient Stripe { get; }

    public static async Task<CliWorld> CreateAsync(Provider provider)
    {
        var database = await TestDatabase.CreateAsync(provider);
        var emulator = await StripeEmulatorServer.StartAsync();
        var folder = Path.Combine(Path.GetTempPath(), "usagebilling-cli-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(folder);
        await System.IO.File.WriteAllTextAsync(Path.Combine(folder, "appsettings.json"), AppSettings);
        return new CliWorld(database, emulator, folder);
    }

    /// <summary>Runs the CLI against this world's database and emulator.</summary>
    public Task<CliRun> RunAsync(params string[] args) =>
        CliRunner.RunAsync(Folder, [.. args, "--connection", Database.ConnectionString, "--stripe-key", "sk_test_cli_tests", "--stripe-api-base", Emulator.ApiBase]);

    public async Task<CliRun> RunOkAsync(params string[] args)
    {
        var run = await RunAsync(args);
        Assert.True(run.ExitCode == 0, $"usagebilling {string.Join(' ', args)}: {run}");
        return run;
    }

    public async Task<JsonObject> StatusAsync()
    {
        var run = await RunOkAsync("status", "--json");
        return JsonNode.Parse(run.Stdout)!.AsObject();
    }

    /// <summary>A user with a Stripe customer in the emulator and in the database.</summary>
    public async Task<(Guid UserId, string CustomerId)> AddCustomerAsync()
    {
        var customer = await new CustomerService(Stripe).CreateAsync(new CustomerCreateOptions { Email = $"{Guid.NewGuid():N}@example.test" });
        var userId = Guid.CreateVersion7();
        var now = DateTimeOffset.UtcNow;
        await using var db = Database.CreateContext();
        db.Users.Add(new BillingUser { Id = userId, Email = customer.Email, CreatedAt = now });
        db.BillingCustomers.Add(new BillingCustomer { UserId = userId, StripeCustomerId = customer.Id, PlanId = "starter", CreatedAt = now, UpdatedAt = now });
        await db.SaveChangesAsync();
        return (userId, customer.Id);
    }

    public Task AddEventsAsync(Guid userId, string meter, params long[] quantities) =>
        AddEventsAsync(userId, EventTime(DateTimeOffset.UtcNow), meter, quantities);

    public async Task AddEventsAsync(Guid userId, DateTimeOffset occurredAt, string meter, params long[] quantities)
    {
        var now = DateTimeOffset.UtcNow;
        await using var db = Database.CreateContext();
        foreach (var q in quantities)
        {
            db.UsageEvents.Add(new UsageEvent { Id = Guid.CreateVersion7(), UserId = userId, Meter = meter, Quantity = q, OccurredAt = occurredAt, CreatedAt = now });
        }

        await db.SaveChangesAsync();
    }

    /// <summary>A report whose delivery was never acknowledged for more than a day: the flusher leaves it as needs_review.</summary>
    public async Task<Guid> AddNeedsReviewReportAsync(Guid userId, string customerId, string meter, long quantity)
    {
        var now = DateTimeOffset.UtcNow;
        var period = BillingPeriod.CalendarMonth(now);
        var reportId = Guid.CreateVersion7();
        await using var db = Database.CreateContext();
        db.UsageReports.Add(new UsageReport
        {
            Id = reportId,
            StripeCustomerId = customerId,
            Meter = meter,
            Quantity = quantity,
            EventCount = 1,
            Timestamp = EventTime(now),
            PeriodStart = period.Start,
            PeriodEnd = period.End,
            Status = UsageBilling.Storage.UsageReportStatus.NeedsReview,
            Attempts = 3,
            NextAttemptAt = now,
            FirstAttemptAt = now.AddHours(-24),
            LastError = "needs_review: first attempted a day ago and never acknowledged",
            CreatedAt = now.AddHours(-24),
        });
        db.UsageEvents.Add(new UsageEvent { Id = Guid.CreateVersion7(), UserId = userId, Meter = meter, Quantity = quantity, OccurredAt = EventTime(now), ReportId = reportId, CreatedAt = now.AddHours(-24) });
        await db.SaveChangesAsync();
        return reportId;
    }

    /// <summary>Sends a meter event straight to the emulator, as another system (or a lost acknowledgement) would.</summary>
    public Task SendMeterEventAsync(string customerId, string meter, long value, string? identifier = null) =>
        new MeterEventService(Stripe).CreateAsync(new MeterEventCreateOptions
        {
            EventName = meter,
            Identifier = identifier ?? Guid.NewGuid().ToString(),
            Timestamp = EventTime(DateTimeOffset.UtcNow).UtcDateTime,
            Payload = new Dictionary<string, string> { ["stripe_customer_id"] = customerId, ["value"] = value.ToString(System.Globalization.CultureInfo.InvariantCulture) },
        });

    public Task<decimal> StripeTotalAsync(string customerId, string meter)
    {
        var period = BillingPeriod.CalendarMonth(DateTimeOffset.UtcNow);
        return Emulator.Admin.GetMeterTotalAsync(customerId, meter, period.Start, period.End);
    }

    public async Task<List<UsageReport>> ReportsAsync()
    {
        await using var db = Database.CreateContext();
        return await db.UsageReports.AsNoTracking().ToListAsync();
    }

    /// <summary>A minute ago, but never before the current calendar month (events must fall in the period reconcile checks).</summary>
    private static DateTimeOffset EventTime(DateTimeOffset now)
    {
        var start = BillingPeriod.CalendarMonth(now).Start;
        var t = now.AddMinutes(-1);
        return t < start ? start : t;
    }

    public async ValueTask DisposeAsync()
    {
        await Emulator.DisposeAsync();
        await Database.DisposeAsync();
        try
        {
            Directory.Delete(Folder, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
