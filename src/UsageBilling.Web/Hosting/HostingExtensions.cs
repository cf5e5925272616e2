using UsageBilling.Storage;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Identity;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.StripeEmulator;
using UsageBilling.Web.Billing;
using UsageBilling.Web.Components;
using UsageBilling.Web.Data;
using UsageBilling.Web.Endpoints;
using UsageBilling.Web.Health;

namespace UsageBilling.Web.Hosting;

/// <summary>Everything <c>Program.cs</c> wires, one concern per method.</summary>
internal static class HostingExtensions
{
    private const string EmulatorKey = "sk_test_usagebilling_emulator";

    /// <summary>
    /// With <c>Stripe:SecretKey</c> the app talks to Stripe (or to <c>Stripe:ApiBase</c>); without it,
    /// an emulator will start in this process (<see cref="StartStripeEmulatorAsync"/>) and the app is pointed at it.
    /// </summary>
    public static void AddStripeAccess(this WebApplicationBuilder builder)
    {
        var config = builder.Configuration;
        var access = new StripeAccess(emulated: string.IsNullOrWhiteSpace(config["Stripe:SecretKey"]));
        if (access.IsEmulated)
        {
            config.AddInMemoryCollection(new Dictionary<string, string?> { ["Stripe:SecretKey"] = EmulatorKey });

            // The emulator's port is known only once it runs, which is after Build() and before the host starts.
            builder.Services.PostConfigure<StripeOptions>(o =>
            {
                var emulator = access.Emulator ?? throw new InvalidOperationException("The in-process Stripe emulator was not started: call app.StartStripeEmulatorAsync() before running the app.");
                o.ApiBase = emulator.ApiBase;
                o.MeterEventsBase = emulator.ApiBase;
            });
        }

        // A factory registration, so the container disposes (stops) the emulator with the app.
        builder.Services.AddSingleton(_ => access);
    }

    /// <summary>
    /// Starts the in-process emulator when no key is configured. Called after <c>Build()</c>, so
    /// that the app's host is the first one built in the process (<c>WebApplicationFactory</c> relies on it).
    /// </summary>
    public static async Task StartStripeEmulatorAsync(this WebApplication app)
    {
        var access = app.Services.GetRequiredService<StripeAccess>();
        if (!access.IsEmulated)
        {
            return;
        }

        var options = app.Services.GetRequiredService<IOptions<AppOptions>>().Value;
        var time = app.Services.GetRequiredService<TimeProvider>();
        var stateFile = options.EmulatorStateFile ?? Path.Combine(DataFolder(app.Configuration, app.Environment), "stripe-emulator.json");
        var persisted = !string.IsNullOrWhiteSpace(stateFile);
        if (persisted)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(stateFile))!);
        }

        // A brand-new demo starts the emulator's clock in the past, so the demo subscription's
        // period began days ago and the seeded history falls inside it; the clock catches up after seeding.
        var freshDemo = options.SeedDemo && app.Environment.IsDevelopment() && (!persisted || !File.Exists(stateFile));
        var shift = freshDemo ? TimeSpan.FromDays(Math.Clamp(options.DemoHistoryDays, 0, 30)) : TimeSpan.Zero;
        var emulatorOptions = new StripeEmulatorOptions
        {
            StateFilePath = persisted ? stateFile : null,
            TimeProvider = shift > TimeSpan.Zero ? new ShiftedTimeProvider(time, shift) : time,
            WebhookSignatureClock = WebhookSignatureClock.System,
        };

        // The emulator is a web host of its own. Build it outside this flow's ExecutionContext:
        // WebApplicationFactory recognises "its" hosts by an AsyncLocal and would otherwise apply its
        // test configuration (TestServer) to the emulator's host too.
        Task<StripeEmulatorServer> starting;
        using (ExecutionContext.SuppressFlow())
        {
            starting = Task.Run(() => StripeEmulatorServer.StartAsync(emulatorOptions));
        }

        var emulator = await starting;
        access.Started(emulator, shift);
    }

    /// <summary>The database (SQLite file by default, PostgreSQL with <c>Database:Provider=Postgres</c>), UsageBilling, Stripe and the provisioner.</summary>
    public static void AddBillingAndDatabase(this WebApplicationBuilder builder)
    {
        var config = builder.Configuration;
        builder.Services.AddOptions<AppOptions>().Bind(config.GetSection(AppOptions.SectionName));

        // The first hosted service, registered before the library's (the alert dispatcher, the flusher): it
        // migrates and provisions before their first tick reads the tables.
        builder.Services.AddHostedService<AppStartup>();
        var usage = builder.Services.AddUsageBilling(config.GetSection("UsageBilling"));
        var provider = config["Database:Provider"] ?? "Sqlite";
        var connectionString = config.GetConnectionString("UsageBilling");
        if (provider.Equals("Postgres", StringComparison.OrdinalIgnoreCase) || provider.Equals("PostgreSQL", StringComparison.OrdinalIgnoreCase))
        {
            if (string.IsNullOrWhiteSpace(connectionString))
            {
                throw new InvalidOperationException("Database:Provider is Postgres but ConnectionStrings:UsageBilling is empty.");
            }

            usage.UsePostgres<PostgresAppDbContext>(connectionString);
            builder.AddContextAndIdentity<PostgresAppDbContext>();
        }
        else if (provider.Equals("Sqlite", StringComparison.OrdinalIgnoreCase))
        {
            if (string.IsNullOrWhiteSpace(connectionString))
            {
                connectionString = $"Data Source={Path.Combine(DataFolder(config, builder.Environment), "usagebilling.db")}";
            }

            usage.UseSqlite<SqliteAppDbContext>(connectionString);
            builder.AddContextAndIdentity<SqliteAppDbContext>();
        }
        else
        {
            throw new InvalidOperationException($"Database:Provider must be Sqlite or Postgres, was '{provider}'.");
        }

        usage.UseStripe(config.GetSection("Stripe")).AddStripeProvisioner().AddFlusher(config.GetSection("UsageBilling:Flush"))
            .AddAspNetCore(o =>
            {
                config.GetSection(BillingAccountOptions.SectionName).Bind(o);

                // The sample's own switch (Billing:SubscribeWith); unset: Checkout with real Stripe, the API with the emulator.
                var mode = config["Billing:SubscribeWith"] ?? config[$"{BillingAccountOptions.SectionName}:SubscribeWith"];
                o.SubscribeWith = mode is null
                    ? (string.IsNullOrWhiteSpace(config["Stripe:SecretKey"]) || config["Stripe:SecretKey"] == EmulatorKey ? SubscribeMode.Api : SubscribeMode.Checkout)
                    : Enum.TryParse<SubscribeMode>(mode, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed)
                        ? parsed
                        : throw new InvalidOperationException($"Billing:SubscribeWith must be Api or Checkout, was '{mode}'.");
            });
        builder.Services.Configure<UsageIngestionOptions>(config.GetSection("UsageBilling:Ingestion"));
        builder.Services.AddSingleton<PlanCatalog>();
        builder.Services.AddScoped<AssistantService>();
        builder.Services.AddSingleton<PastPeriods>();
        builder.Services.AddSingleton<UsageBilling.IUsageAlertHandler, UsageAlertNotifier>();
        builder.Services.AddOptions<AlertWebhookOptions>().Bind(config.GetSection(AlertWebhookOptions.SectionName)).ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<AlertWebhookOptions>, AlertWebhookOptionsValidator>();
        builder.Services.AddHttpClient(AlertWebhookSender.ClientName, c => c.Timeout = TimeSpan.FromSeconds(10));
        builder.Services.AddSingleton<IUsageAlertHandler, AlertWebhookSender>();
        // AddFlusher adds the flush-lag check ("usagebilling-flush").
        builder.Services.AddHealthChecks().AddCheck<DatabaseHealthCheck>("database");
    }

    private static void AddContextAndIdentity<TContext>(this WebApplicationBuilder builder)
        where TContext : AppDbContext
    {
        var services = builder.Services;
        services.TryAddScoped(sp => sp.GetRequiredService<IDbContextFactory<TContext>>().CreateDbContext());
        services.AddScoped<AppDbContext>(sp => sp.GetRequiredService<TContext>());
        services.AddSingleton<IDbContextFactory<AppDbContext>, AppDbContextFactory<TContext>>();

        services.AddAuthentication(IdentityConstants.ApplicationScheme).AddIdentityCookies();
        services.AddIdentityCore<AppUser>(o =>
            {
                o.User.RequireUniqueEmail = true;
                // Length over composition rules (NIST SP 800-63B); the rate limits keep guessing slow.
                o.Password.RequireNonAlphanumeric = false;
                o.Password.RequireUppercase = false;
                o.Password.RequireDigit = false;
                o.Password.RequiredLength = 12;
                o.Lockout.MaxFailedAccessAttempts = 20;
                o.Lockout.DefaultLockoutTimeSpan = TimeSpan.FromMinutes(5);
                o.SignIn.RequireConfirmedAccount = false;
            })
            .AddRoles<IdentityRole<Guid>>()
            .AddEntityFrameworkStores<TContext>()
            .AddSignInManager()
            .AddDefaultTokenProviders();
        services.ConfigureApplicationCookie(o =>
        {
            o.LoginPath = "/account/login";
            o.AccessDeniedPath = "/account/denied";
            o.Cookie.Name = "ub_auth";
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Lax;

            // Secure always (production runs behind HTTPS); the README's local run is plain HTTP, so Development
            // sets Security:HttpsOnlyCookies=false in appsettings.Development.json.
            o.Cookie.SecurePolicy = builder.Configuration.GetValue("Security:HttpsOnlyCookies", true) ? CookieSecurePolicy.Always : CookieSecurePolicy.SameAsRequest;
            o.Events.OnRedirectToLogin = ctx => ApiOr(ctx, StatusCodes.Status401Unauthorized);
            o.Events.OnRedirectToAccessDenied = ctx => ApiOr(ctx, StatusCodes.Status403Forbidden);
        });
        services.AddAuthorization();
        services.AddCascadingAuthenticationState();
    }

    /// <summary>API calls get a status code; pages get the redirect to the login page.</summary>
    private static Task ApiOr(Microsoft.AspNetCore.Authentication.RedirectContext<CookieAuthenticationOptions> ctx, int status)
    {
        if (ctx.Request.Path.StartsWithSegments("/api", StringComparison.OrdinalIgnoreCase))
        {
            ctx.Response.StatusCode = status;
            return Task.CompletedTask;
        }

        ctx.Response.Redirect(ctx.RedirectUri);
        return Task.CompletedTask;
    }

    /// <summary>Pages, API error shape and antiforgery.</summary>
    public static void AddWebUi(this WebApplicationBuilder builder)
    {
        builder.AddSecurity();
        builder.Services.AddRazorComponents();
        builder.Services.AddProblemDetails();
        builder.Services.AddAntiforgery();
        builder.Services.AddHttpContextAccessor();
    }

    /// <summary>The middleware pipeline and every endpoint.</summary>
    public static void MapApp(this WebApplication app)
    {
        app.UseSecurity();
        app.UseStaticFiles();
        app.UseAuthentication();
        app.UseAuthorization();
        app.UseRateLimiter();
        app.UseAntiforgery();

        app.MapUsageBillingWebhooks("/webhooks/stripe");
        app.MapUsageBillingIngestion("/api/v1/usage");
        app.MapUsageApi();
        app.MapAccountEndpoints();
        app.MapHealthEndpoints();
        app.MapRazorComponents<App>();
    }

    private static string DataFolder(IConfiguration config, IHostEnvironment environment)
    {
        var folder = config["Database:DataFolder"] ?? "data";
        return Path.IsPathRooted(folder) ? folder : Path.Combine(environment.ContentRootPath, folder);
    }
}

/// <summary>Hands out the provider-specific context as the app's <see cref="AppDbContext"/>.</summary>
/// <typeparam name="TContext">The provider's context.</typeparam>
/// <param name="inner">The provider context's factory.</param>
internal sealed class AppDbContextFactory<TContext>(IDbContextFactory<TContext> inner) : IDbContextFactory<AppDbContext>
    where TContext : AppDbContext
{
    public AppDbContext CreateDbContext() => inner.CreateDbContext();
}
