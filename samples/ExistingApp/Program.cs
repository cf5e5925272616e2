using UsageBilling.Storage;
using ExistingApp;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using UsageBilling;
using UsageBilling.EntityFrameworkCore;

var builder = WebApplication.CreateBuilder(args);
await using var localStripe = await LocalStripe.StartUnlessConfiguredAsync(builder.Configuration);

// The app as it was: accounts in SQLite, a flat-rate plan on Stripe.
var database = builder.Configuration.GetConnectionString("App")!;
builder.Services.AddDbContext<AppDbContext>(o => o.UseSqlite(database), optionsLifetime: ServiceLifetime.Singleton);
builder.Services.AddFlatRatePlan(builder.Configuration);

// Metered billing: usage recorded in the app's database, flushed to Stripe Meters in the background.
builder.Services.AddUsageBilling(builder.Configuration.GetSection("UsageBilling"))
    .UseSqlite<AppDbContext>(database)
    .UseStripe(builder.Configuration.GetSection("Stripe"))
    .AddStripeProvisioner()
    .AddFlusher(builder.Configuration.GetSection("UsageBilling:Flush"))
    .AddAspNetCore();

var app = builder.Build();
await app.Services.GetRequiredService<IUsageBillingDatabase>().MigrateAsync();
if (localStripe is not null)
{
    // Meters (and the plan's prices) in the local Stripe; against real Stripe, `usagebilling setup` does this once.
    await app.Services.GetRequiredService<IStripeProvisioner>().ProvisionAsync();
    app.Logger.LogInformation("No Stripe:SecretKey configured: using the local Stripe emulator at {ApiBase}", localStripe.ApiBase);
}

// Sign-up onto the flat-rate plan, as before; then the plan's metered price joins that same subscription.
app.MapPost("/accounts", async Task<Results<Created<Account>, ProblemHttpResult>> (NewAccount body, AppDbContext db, FlatRatePlan plan, IBillingAccounts billing, CancellationToken ct) =>
{
    if (string.IsNullOrWhiteSpace(body.Email) || !body.Email.Contains('@', StringComparison.Ordinal))
    {
        return TypedResults.Problem("email must be an e-mail address.", statusCode: StatusCodes.Status400BadRequest);
    }

    if (await db.Accounts.AnyAsync(a => a.Email == body.Email, ct))
    {
        return TypedResults.Problem($"An account with {body.Email} exists.", statusCode: StatusCodes.Status409Conflict);
    }

    var account = new Account { Id = Guid.CreateVersion7(), Email = body.Email };
    await plan.SubscribeAsync(account, ct);
    db.Accounts.Add(account);
    try
    {
        await db.SaveChangesAsync(ct);
    }
    catch (DbUpdateException)
    {
        // The unique e-mail index: a concurrent sign-up with the same address won.
        return TypedResults.Problem($"An account with {body.Email} exists.", statusCode: StatusCodes.Status409Conflict);
    }

    // The app's flat item stays; UsageBilling adds the metered price and tracks the subscription's periods.
    await billing.AttachMeteredPricesAsync(account.Id, account.StripeSubscriptionId!, "pro", ct);
    return TypedResults.Created($"/accounts/{account.Id}", account);
});

// The billable endpoint: usage is recorded (durably, once per Idempotency-Key) before the work runs.
app.MapPost("/accounts/{id:guid}/reports", async Task<Results<Ok<Report>, ProblemHttpResult>> (Guid id, [FromHeader(Name = "Idempotency-Key")] string? key, IUsageRecorder usage, TimeProvider time, CancellationToken ct) =>
{
    try
    {
        await usage.RecordAsync(id, "reports", idempotencyKey: key, cancellationToken: ct);
    }
    catch (UsageRejectedException ex)
    {
        return TypedResults.Problem(ex.Message, statusCode: ex is UnknownUserException ? StatusCodes.Status404NotFound : StatusCodes.Status422UnprocessableEntity);
    }

    return TypedResults.Ok(new Report(id, time.GetUtcNow()));
});

// Usage this period from the local database (no Stripe call): used, allowance, pending, projected cost, daily.
app.MapGet("/accounts/{id:guid}/usage", (Guid id, IUsageSummaryService summaries, CancellationToken ct) => summaries.GetCurrentPeriodAsync(id, ct));
app.MapHealthChecks("/health");

// Stripe's subscription, invoice and meter-error events (Stripe:WebhookSecret), applied in any delivery order.
app.MapUsageBillingWebhooks("/webhooks/stripe");

// Usage from the app's other services (workers, other languages), with API keys from `usagebilling api-keys create`.
app.MapUsageBillingIngestion("/api/v1/usage");
app.Run();

internal sealed record NewAccount(string Email);

internal sealed record Report(Guid AccountId, DateTimeOffset GeneratedAt);
