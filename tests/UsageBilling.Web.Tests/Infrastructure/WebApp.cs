using System.Net;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Stripe;
using UsageBilling.Web.Data;
using UsageBilling.Web.Hosting;

namespace UsageBilling.Web.Tests.Infrastructure;

/// <summary>
/// The real app (its Program, its in-process Stripe emulator, its migrations) on a fresh database,
/// with a known webhook secret, the background flusher off (tests flush explicitly) and a "tiny"
/// plan whose small allowance and hard limit make thresholds quick to reach.
/// </summary>
public class WebApp : WebApplicationFactory<AppDbContext>, IAsyncLifetime
{
    public const string WebhookSecret = "whsec_test_usagebilling_web_tests";
    public const string TinyIncluded = "5";
    public const string TinyHardLimit = "8";

    /// <summary>
    /// WebApplicationFactory finds the app's host by listening to every host built in the process
    /// until it sees one; the app also builds the emulator's host. Starting one app at a time keeps
    /// one factory from capturing another app's emulator.
    /// </summary>
    private static readonly SemaphoreSlim StartGate = new(1, 1);

    private readonly Provider _provider;
    private readonly bool _kestrel;
    private readonly bool _demo;
    private TestDatabase? _database;

    protected WebApp(Provider provider, bool kestrel = false, bool demo = false)
    {
        _demo = demo;
        _provider = provider;
        _kestrel = kestrel;
        if (kestrel)
        {
            // A real socket on 127.0.0.1 only (a free port), so that a browser can reach the app.
            UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        }
    }

    public Provider Provider => _provider;

    public virtual async ValueTask InitializeAsync()
    {
        _database = await TestDatabase.CreateAsync(_provider);

        // Start the host now, so every test starts with a migrated, provisioned app.
        await StartGate.WaitAsync();
        try
        {
            if (_kestrel)
            {
                StartServer();
            }
            else
            {
                _ = Services;
            }
        }
        finally
        {
            StartGate.Release();
        }
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        // UseSetting (not ConfigureAppConfiguration): Program reads these before the host is built.
        builder.UseEnvironment(_demo ? "Development" : "Testing");
        builder.UseSetting("Database:Provider", _provider.ToString());
        builder.UseSetting("ConnectionStrings:UsageBilling", _database!.ConnectionString);
        builder.UseSetting("App:EmulatorStateFile", "");
        builder.UseSetting("App:SeedDemo", _demo ? "true" : "false");
        builder.UseSetting("Stripe:SecretKey", "");
        builder.UseSetting("Stripe:WebhookSecret", _demo ? "" : WebhookSecret);
        builder.UseSetting("UsageBilling:Flush:Enabled", "false");
        builder.UseSetting("UsageBilling:Plans:tiny:DisplayName", "Tiny");
        builder.UseSetting("UsageBilling:Plans:tiny:MonthlyPrice", "5");
        builder.UseSetting("UsageBilling:Plans:tiny:Meters:ai_messages:Included", TinyIncluded);
        builder.UseSetting("UsageBilling:Plans:tiny:Meters:ai_messages:UnitPrice", "0.5");
        builder.UseSetting("UsageBilling:Plans:tiny:Meters:ai_messages:HardLimit", TinyHardLimit);

        // The suite signs up and in many accounts from one client: the limits are tested by SecurityTests' own app.
        builder.UseSetting("Security:HttpsOnlyCookies", _kestrel ? "false" : "true");
        builder.UseSetting("Security:SignInPerClient", "100000");
        builder.UseSetting("Security:SignInPerAccount", "100000");
        builder.UseSetting("Security:SignUpPerClient", "100000");
        builder.UseSetting("Security:BillablePerAccount", "100000");
        ConfigureSettings(builder);
    }

    /// <summary>Lets a derived app change settings (after the defaults above).</summary>
    /// <param name="builder">The web host builder.</param>
    protected virtual void ConfigureSettings(IWebHostBuilder builder)
    {
    }

    internal StripeAccess Stripe => Services.GetRequiredService<StripeAccess>();

    /// <summary>The Kestrel address (with <c>kestrel: true</c>), e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public string BaseUrl =>
        Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.First()
        ?? throw new InvalidOperationException("The app is not listening on a socket.");

    public StripeClient StripeClient => Services.GetRequiredService<StripeClient>();

    public AppDbContext CreateDbContext() => Services.GetRequiredService<IDbContextFactory<AppDbContext>>().CreateDbContext();

    public UserSession CreateSession()
    {
        if (_kestrel)
        {
            // Over the socket: a plain client with a cookie jar and no automatic redirects.
#pragma warning disable CA2000 // The HttpClient owns the handler.
            var handler = new HttpClientHandler { AllowAutoRedirect = false, UseCookies = true, CookieContainer = new CookieContainer() };
#pragma warning restore CA2000
            return new(new HttpClient(handler) { BaseAddress = new Uri(BaseUrl) });
        }

        // https: the auth cookie is Secure outside Development, and TestServer serves any scheme.
        return new(CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false, HandleCookies = true, BaseAddress = new Uri("https://localhost") }));
    }

    /// <summary>Signs up a fresh account and returns its signed-in session and id.</summary>
    public async Task<(UserSession Session, Guid UserId)> SignUpAsync(string? email = null)
    {
        var session = CreateSession();
        email ??= $"user-{Guid.NewGuid():N}@example.com";
        await session.RegisterAsync(email, "correct-horse-1");
        await using var scope = Services.CreateAsyncScope();
        var user = await scope.ServiceProvider.GetRequiredService<UserManager<AppUser>>().FindByEmailAsync(email)
            ?? throw new InvalidOperationException("The account was not created.");
        return (session, user.Id);
    }

    public async Task AddToRoleAsync(Guid userId, string role)
    {
        await using var scope = Services.CreateAsyncScope();
        var users = scope.ServiceProvider.GetRequiredService<UserManager<AppUser>>();
        var user = await users.FindByIdAsync(userId.ToString()) ?? throw new InvalidOperationException("No such user.");
        var result = await users.AddToRoleAsync(user, role);
        Assert.True(result.Succeeded);
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }
}

public sealed class SqliteWebApp() : WebApp(Provider.Sqlite);

public sealed class PostgresWebApp() : WebApp(Provider.Postgres);

public sealed class BrowserWebApp() : WebApp(Provider.Sqlite, kestrel: true);

/// <summary>The app as <c>dotnet run</c> starts it in Development: demo account seeded, no webhook secret configured.</summary>
public sealed class DemoWebApp() : WebApp(Provider.Sqlite, kestrel: true, demo: true);
