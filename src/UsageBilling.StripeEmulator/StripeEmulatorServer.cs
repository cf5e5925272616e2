using System.Net;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.Api;
using UsageBilling.StripeEmulator.State;
using UsageBilling.StripeEmulator.Webhooks;

namespace UsageBilling.StripeEmulator;

/// <summary>
/// The emulator hosted in this process on a free 127.0.0.1 port. Point Stripe.net at <see cref="ApiBase"/>
/// (both <c>ApiBase</c> and <c>MeterEventsBase</c>) and drive faults, clock and inspection through <see cref="Admin"/>.
/// </summary>
public sealed class StripeEmulatorServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly EmulatorCore _core;

    private StripeEmulatorServer(WebApplication app, EmulatorCore core, Uri baseUrl)
    {
        _app = app;
        _core = core;
        BaseUrl = baseUrl;
        ApiBase = baseUrl.ToString().TrimEnd('/');
    }

    /// <summary>Root URL, e.g. <c>http://127.0.0.1:54321/</c>.</summary>
    public Uri BaseUrl { get; }

    /// <summary>Root URL without the trailing slash, for <c>StripeClientOptions.ApiBase</c> and <c>MeterEventsBase</c>.</summary>
    public string ApiBase { get; }

    /// <summary>In-process control: faults, rate limit, concurrency enforcement, clock, inspection, webhooks, reset.</summary>
    public EmulatorAdmin Admin => _core.Admin;

    /// <summary>The options the emulator runs with.</summary>
    public StripeEmulatorOptions Options => _core.Runtime.Options;

    /// <summary>
    /// The token the HTTP admin API requires (<see cref="StripeEmulatorOptions.AdminToken"/>, or the one generated at
    /// start): pass it to <see cref="EmulatorAdminClient"/>, or send it as <c>Authorization: Bearer &lt;token&gt;</c>.
    /// </summary>
    public string AdminToken => _core.AdminToken;

    /// <summary>An <see cref="EmulatorAdminClient"/> for this emulator's HTTP admin API, carrying <see cref="AdminToken"/>.</summary>
    /// <param name="httpClient">The client to send with (not disposed by the admin client).</param>
    /// <returns>The admin client.</returns>
    public EmulatorAdminClient CreateAdminClient(HttpClient httpClient) => new(httpClient, BaseUrl, AdminToken);

    /// <summary>Starts an emulator on 127.0.0.1 (a free port unless <see cref="StripeEmulatorOptions.Port"/> is set).</summary>
    /// <remarks>
    /// Safe to call before the app builds its own host: the emulator's host is built outside the caller's
    /// execution context, so tools that find the app's host by watching the hosts built in its flow
    /// (<c>dotnet ef</c>, <c>WebApplicationFactory</c>) never take the emulator's host for the app's.
    /// </remarks>
    public static async Task<StripeEmulatorServer> StartAsync(StripeEmulatorOptions? options = null, CancellationToken cancellationToken = default)
    {
        Task<StripeEmulatorServer> starting;
        using (ExecutionContext.SuppressFlow())
        {
            starting = Task.Run(() => StartCoreAsync(options, cancellationToken), cancellationToken);
        }

        return await starting.ConfigureAwait(false);
    }

    private static async Task<StripeEmulatorServer> StartCoreAsync(StripeEmulatorOptions? options, CancellationToken cancellationToken)
    {
        options ??= new StripeEmulatorOptions();
        var app = EmulatorApp.Build([], options, inProcess: true);
        var core = app.Services.GetRequiredService<EmulatorCore>();
        await core.LoadAsync(cancellationToken);
        await app.StartAsync(cancellationToken);
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new StripeEmulatorServer(app, core, new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal) + "/"));
    }

    /// <summary>Stops the server, saves the state file (when configured) and stops webhook delivery.</summary>
    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>The emulator's composed parts, one per host.</summary>
internal sealed partial class EmulatorCore : IAsyncDisposable
{
    private readonly ILogger _logger;

    public EmulatorCore(StripeEmulatorOptions options, ILoggerFactory loggers)
    {
        _logger = loggers.CreateLogger("UsageBilling.StripeEmulator");
        Runtime = new EmulatorRuntime(options);
        Webhooks = new WebhookDispatcher(
            () => (options.WebhookSignatureClock == WebhookSignatureClock.System ? TimeProvider.System : Runtime.Clock).GetUtcNow().ToUnixTimeSeconds(),
            options.WebhookRetryDelays,
            loggers.CreateLogger("UsageBilling.StripeEmulator.Webhooks"));
        Backend = new StripeBackend(Runtime, Webhooks);
        if (options.InvoiceFinalizationWaitsForWebhooks)
        {
            Webhooks.EventSettled = Backend.Billing.InvoiceCreatedSettled;
        }
        Idempotency = new IdempotencyStore();
        Handler = new StripeApiHandler(Backend, Runtime, Idempotency, _logger);
        Admin = new EmulatorAdmin(Backend, Runtime, Idempotency, Webhooks);
        AdminToken = options.AdminToken ?? "emu_admin_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
    }

    /// <summary>The token the HTTP admin API requires: configured, or generated once per start.</summary>
    public string AdminToken { get; }

    public EmulatorRuntime Runtime { get; }

    public WebhookDispatcher Webhooks { get; }

    public StripeBackend Backend { get; }

    public IdempotencyStore Idempotency { get; }

    public StripeApiHandler Handler { get; }

    public EmulatorAdmin Admin { get; }

    public async Task LoadAsync(CancellationToken ct)
    {
        if (Runtime.Options.StateFilePath is { } path && await Backend.LoadAsync(path, ct))
        {
            LogLoaded(_logger, path);
        }
    }

    public async Task SaveAsync(CancellationToken ct)
    {
        var path = Runtime.Options.StateFilePath
            ?? throw new ArgumentException("No state file is configured (StripeEmulatorOptions.StateFilePath / --StateFile).");
        await Backend.SaveAsync(path, ct);
    }

    public async ValueTask DisposeAsync()
    {
        if (Runtime.Options.StateFilePath is not null)
        {
            await SaveAsync(CancellationToken.None);
        }

        await Webhooks.DisposeAsync();
    }

    /// <summary>Says where the admin API is and which token it takes (the standalone emulator, at start).</summary>
    public void LogAdminToken() => LogAdminTokenCore(_logger, AdminEndpoints.Prefix, AdminToken, AdminEndpoints.TokenHeader);

    [LoggerMessage(Level = LogLevel.Information, Message = "Emulator admin API at {Prefix} requires the admin token {Token} (Authorization: Bearer <token> or {Header})")]
    private static partial void LogAdminTokenCore(ILogger logger, string prefix, string token, string header);

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded emulator state from {Path}")]
    private static partial void LogLoaded(ILogger logger, string path);
}

/// <summary>Runs due period ends and invoice finalizations once a second even when no request arrives.</summary>
internal sealed class BillingClockService(EmulatorCore core) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), core.Runtime.Options.TimeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                core.Backend.ProcessDue(core.Backend.Now);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}

/// <summary>Builds the web host shared by the standalone program and <see cref="StripeEmulatorServer"/>.</summary>
internal static class EmulatorApp
{
    public static WebApplication Build(string[] args, StripeEmulatorOptions options, bool inProcess)
    {
        options.Validate();
        var appOptions = new WebApplicationOptions { Args = args, ApplicationName = typeof(EmulatorApp).Assembly.GetName().Name };
        WebApplicationBuilder builder;
        if (inProcess)
        {
            // Hosted inside another app: read none of its configuration (appsettings.json, ASPNETCORE_URLS, Kestrel
            // endpoints) and listen only on loopback.
            builder = WebApplication.CreateEmptyBuilder(appOptions);
            builder.WebHost.UseKestrelCore().ConfigureKestrel(k => k.Listen(IPAddress.Loopback, options.Port));
            builder.Services.AddRoutingCore();
            builder.Services.AddLogging();
        }
        else
        {
            builder = WebApplication.CreateSlimBuilder(appOptions);
        }

        // Per-request Information logs would dominate the hot path.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Services.ConfigureHttpJsonOptions(o => AdminJson.Configure(o.SerializerOptions));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<EmulatorCore>();
        builder.Services.AddHostedService<BillingClockService>();

        var app = builder.Build();
        var core = app.Services.GetRequiredService<EmulatorCore>();

        // Hosted pages (hosted_invoice_url) name the root the emulator listens on.
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
            if (address is not null)
            {
                core.Runtime.PublicRoot = address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal).TrimEnd('/');
            }
        });

        app.UseRouting();
        app.UseUnrecognizedUrls(app.Services.GetRequiredService<EndpointDataSource>());
        app.MapStripeApi(core.Handler);
        app.MapEmulatorAdmin(core.Admin, core.AdminToken, core.SaveAsync);
        return app;
    }
}
