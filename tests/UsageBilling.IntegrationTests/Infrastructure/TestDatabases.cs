using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.IntegrationTests.Infrastructure;

/// <summary>A service provider wired like an app: AddUsageBilling + the chosen store + a fake clock.</summary>
public sealed class BillingHost : IAsyncDisposable
{
    private readonly ServiceProvider _services;

    private BillingHost(ServiceProvider services, FakeTimeProvider time)
    {
        _services = services;
        Time = time;
    }

    public FakeTimeProvider Time { get; }

    public IServiceProvider Services => _services;

    public T Get<T>()
        where T : notnull => _services.GetRequiredService<T>();

    public static Task<BillingHost> StartAsync(TestDatabase database, DateTimeOffset now, Action<UsageBillingOptions>? configure = null) =>
        StartAsync(database, new FakeTimeProvider(now), configure, null);

    public static async Task<BillingHost> StartAsync(TestDatabase database, FakeTimeProvider time, Action<UsageBillingOptions>? configure, Action<UsageBillingBuilder>? extend)
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddSingleton<TimeProvider>(time);
        var builder = services.AddUsageBilling(o =>
        {
            TestPlans.Configure(o);
            configure?.Invoke(o);
        });
        if (database.Provider == Provider.Sqlite)
        {
            builder.UseSqlite(database.ConnectionString);
        }
        else
        {
            builder.UsePostgres(database.ConnectionString);
        }

        extend?.Invoke(builder);
        var provider = services.BuildServiceProvider(new ServiceProviderOptions { ValidateOnBuild = true, ValidateScopes = true });
        await provider.GetRequiredService<IUsageBillingDatabase>().MigrateAsync();
        return new BillingHost(provider, time);
    }

    public UsageBillingDbContext CreateContext() =>
        (UsageBillingDbContext)(_services.GetService<IDbContextFactory<SqliteUsageBillingDbContext>>()?.CreateDbContext()
            ?? (DbContext)_services.GetRequiredService<IDbContextFactory<PostgresUsageBillingDbContext>>().CreateDbContext());

    public async ValueTask DisposeAsync() => await _services.DisposeAsync();
}

/// <summary>The meters and plans every integration test uses.</summary>
public static class TestPlans
{
    public static void Configure(UsageBillingOptions o)
    {
        o.Meters["ai_messages"] = new MeterDefinition { DisplayName = "AI messages", Unit = "messages" };
        o.Meters["api_calls"] = new MeterDefinition { DisplayName = "API calls", Aggregation = MeterAggregation.Count };

        // Most facts record for users without a plan; the no-plan policy itself is proven in SpendControlTests.
        o.Limits.NoPlan = NoPlanPolicy.Allow;

        var starter = new PlanDefinition { DisplayName = "Starter", MonthlyPrice = 19m };
        // Limits high enough that the flush and summary facts never meet them; SpendControlTests set their own.
        starter.Meters["ai_messages"] = new PlanMeterPrice { Included = 100, UnitPrice = 0.02m, HardLimit = 100_000_000 };
        var apiCalls = new PlanMeterPrice { Included = 1000 };
        apiCalls.Tiers.Add(new PriceTier { UpTo = 5000, UnitAmount = 0.01m });
        apiCalls.Tiers.Add(new PriceTier { UpTo = null, UnitAmount = 0.005m, FlatAmount = 5m });
        starter.Meters["api_calls"] = apiCalls;
        o.Plans["starter"] = starter;

        var volume = new PlanDefinition { DisplayName = "Volume", MonthlyPrice = 0m };
        var vol = new PlanMeterPrice { TiersMode = TiersMode.Volume };
        vol.Tiers.Add(new PriceTier { UpTo = 100, UnitAmount = 0.10m });
        vol.Tiers.Add(new PriceTier { UpTo = 1000, UnitAmount = 0.05m });
        vol.Tiers.Add(new PriceTier { UpTo = null, UnitAmount = 0.01m, FlatAmount = 1m });
        volume.Meters["ai_messages"] = vol;
        o.Plans["volume"] = volume;
    }
}
