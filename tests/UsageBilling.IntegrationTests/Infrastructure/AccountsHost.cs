using UsageBilling.Storage;
using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Stripe;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.StripeEmulator;

namespace UsageBilling.IntegrationTests.Infrastructure;

/// <summary>
/// An ASP.NET Core app wired as the README says (<c>AddUsageBilling…AddAspNetCore()</c>,
/// <c>MapUsageBillingWebhooks</c> and <c>MapUsageBillingIngestion</c>) on Kestrel at 127.0.0.1, against an emulator that shares its fake clock.
/// </summary>
public sealed class AccountsHost : IAsyncDisposable
{
    public const string WebhookSecret = "whsec_test_accounts_host";

    private readonly WebApplication _app;

    private AccountsHost(WebApplication app, StripeEmulatorServer emulator, FakeTimeProvider time, Uri baseAddress, BodyProbe probe, ErrorLog errors)
    {
        _app = app;
        Emulator = emulator;
        Time = time;
        BaseAddress = baseAddress;
        Probe = probe;
        Errors = errors;
    }

    public StripeEmulatorServer Emulator { get; }

    public FakeTimeProvider Time { get; }

    public Uri BaseAddress { get; }

    public Uri WebhookUrl => new(BaseAddress, "/webhooks/stripe");

    /// <summary>How many body bytes the app read of the last webhook request.</summary>
    public BodyProbe Probe { get; }

    /// <summary>Every warning or error the app logged.</summary>
    public ErrorLog Errors { get; }

    public IServiceProvider Services => _app.Services;

    public IBillingAccounts Accounts => Get<IBillingAccounts>();

    public StripeClient Stripe => Get<StripeClient>();

    public T Get<T>()
        where T : notnull => _app.Services.GetRequiredService<T>();

    public static async Task<AccountsHost> StartAsync(TestDatabase database, DateTimeOffset now, Action<BillingAccountOptions>? configure = null, Action<UsageIngestionOptions>? ingestion = null, Action<FlushOptions>? flush = null, Action<StripeEmulatorOptions>? emulatorOptions = null)
    {
        var time = new FakeTimeProvider(now);
        var emulatorSettings = new StripeEmulatorOptions { TimeProvider = time };
        emulatorOptions?.Invoke(emulatorSettings);
        var emulator = await StripeEmulatorServer.StartAsync(emulatorSettings);
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var errors = new ErrorLog();
        builder.Logging.ClearProviders().AddProvider(errors);
        builder.Services.AddSingleton<TimeProvider>(time);
        var usage = builder.Services.AddUsageBilling(TestPlans.Configure);
        if (database.Provider == Provider.Sqlite)
        {
            usage.UseSqlite(database.ConnectionString);
        }
        else
        {
            usage.UsePostgres(database.ConnectionString);
        }

        usage.UseStripe(o =>
            {
                o.SecretKey = "sk_test_accounts";
                o.ApiBase = emulator.ApiBase;
                o.WebhookSecret = WebhookSecret;
                o.MaxNetworkRetries = 0;
            })
            .AddFlusher(o =>
            {
                o.Enabled = false;
                o.RequestsPerSecond = 1000;
                flush?.Invoke(o);
            })
            .AddAspNetCore(o => configure?.Invoke(o));
        builder.Services.Configure<UsageIngestionOptions>(o => ingestion?.Invoke(o));
        var app = builder.Build();
        var probe = new BodyProbe();
        app.Use(async (context, next) =>
        {
            context.Request.Body = probe.Wrap(context.Request.Body);
            await next(context);
        });
        app.MapUsageBillingWebhooks("/webhooks/stripe");
        app.MapUsageBillingIngestion();
        await app.Services.GetRequiredService<IUsageBillingDatabase>().MigrateAsync();
        await app.Services.GetRequiredService<IStripeProvisioner>().ProvisionAsync();
        await app.StartAsync();
        errors.Clear(); // A fresh PostgreSQL database logs the missing migrations history table once.
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new AccountsHost(app, emulator, time, new Uri(address), probe, errors);
    }

    public UsageBillingDbContext CreateContext() =>
        (UsageBillingDbContext)(_app.Services.GetService<IDbContextFactory<SqliteUsageBillingDbContext>>()?.CreateDbContext()
            ?? (DbContext)_app.Services.GetRequiredService<IDbContextFactory<PostgresUsageBillingDbContext>>().CreateDbContext());

    /// <summary>A user of the app (the built-in users table).</summary>
    public async Task<Guid> NewUserAsync()
    {
        await using var db = CreateContext();
        var user = new BillingUser { Id = Guid.NewGuid(), Email = "user@example.com", CreatedAt = Time.GetUtcNow() };
        db.Users.Add(user);
        await db.SaveChangesAsync();
        return user.Id;
    }

    /// <summary>
    /// Waits until the emulator has delivered every webhook it queued. Subscribing drafts an invoice, and the app
    /// flushes the customer on invoice.created: a test that needs its own flush to send what it records waits first.
    /// </summary>
    public async Task WebhookDeliveriesSettledAsync()
    {
        var until = DateTime.UtcNow.AddSeconds(20);
        while (Emulator.Admin.PendingWebhookDeliveries > 0)
        {
            Assert.True(DateTime.UtcNow < until, "the emulator's webhook deliveries did not settle in 20 s");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        await Emulator.DisposeAsync();
    }

    /// <summary>Counts the bytes the app pulls from request bodies.</summary>
    public sealed class BodyProbe
    {
        private long _read;

        public long LastRead => Interlocked.Read(ref _read);

        public Stream Wrap(Stream inner)
        {
            Interlocked.Exchange(ref _read, 0);
            return new CountingStream(inner, n => Interlocked.Add(ref _read, n));
        }
    }

    private sealed class CountingStream(Stream inner, Action<int> counted) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = inner.Read(buffer, offset, count);
            counted(n);
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await inner.ReadAsync(buffer, cancellationToken);
            counted(n);
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Collects warnings and errors logged by the app.</summary>
    public sealed class ErrorLog : ILoggerProvider
    {
        private readonly ConcurrentQueue<string> _entries = new();

        public IReadOnlyCollection<string> Entries => _entries;

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _entries);

        public void Clear() => _entries.Clear();

        public void Dispose()
        {
        }

        private sealed class Logger(string category, ConcurrentQueue<string> entries) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel))
                {
                    entries.Enqueue($"{logLevel} {category}: {formatter(state, exception)} {exception?.Message}");
                }
            }
        }
    }
}
