using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Hosting;

namespace UsageBilling;

/// <summary>Registers UsageBilling: <c>services.AddUsageBilling(...).UseSqlite(cs)</c>.</summary>
public static class UsageBillingServiceCollectionExtensions
{
    /// <summary>Adds UsageBilling configured in code. Choose a store next (<c>UseSqlite</c> / <c>UsePostgres</c>).</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="configure">Sets meters, plans and tuning.</param>
    /// <returns>A builder to choose the store with.</returns>
    public static UsageBillingBuilder AddUsageBilling(this IServiceCollection services, Action<UsageBillingOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return services.AddUsageBillingCore(b => b.Configure(configure));
    }

    /// <summary>Adds UsageBilling bound to a configuration section (usually <c>UsageBilling</c>).</summary>
    /// <param name="services">The service collection.</param>
    /// <param name="section">The section holding <c>Meters</c>, <c>Plans</c> and tuning.</param>
    /// <returns>A builder to choose the store with.</returns>
    public static UsageBillingBuilder AddUsageBilling(this IServiceCollection services, IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(section);
        return services.AddUsageBillingCore(b => b.Bind(section));
    }

    private static UsageBillingBuilder AddUsageBillingCore(this IServiceCollection services, Action<OptionsBuilder<UsageBillingOptions>> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        var options = services.AddOptionsWithValidateOnStart<UsageBillingOptions>();
        configure(options);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<UsageBillingOptions>, UsageBillingOptionsValidator>());
        services.TryAddSingleton(TimeProvider.System);
        services.AddMetrics();
        services.TryAddSingleton<UsageBillingMetrics>();
        services.TryAddSingleton<GroupCommitUsageRecorder>();
        services.TryAddSingleton<IUsageRecorder>(sp => sp.GetRequiredService<GroupCommitUsageRecorder>());
        services.TryAddSingleton<IUsageSummaryService, UsageSummaryService>();
        services.TryAddSingleton<IUsageReportReview, UsageReportReview>();
        services.TryAddSingleton<IUsageLimits, UsageLimitService>();
        services.TryAddSingleton<IUsageCorrections, UsageCorrections>();
        services.TryAddSingleton<IUsageApiKeys, UsageApiKeys>();
        services.TryAddSingleton<UsageAlertDispatcher>();
        services.TryAddSingleton<IUsageAlertDispatcher>(sp => sp.GetRequiredService<UsageAlertDispatcher>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, UsageAlertBackgroundService>());
        services.TryAddSingleton<RetentionSettings>();
        services.TryAddSingleton<IUsageRetention, UsageRetention>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IHostedService, UsageRetentionBackgroundService>());
        return new UsageBillingBuilder(services);
    }
}

/// <summary>Continues the registration: the EF Core package adds <c>UseSqlite</c> and <c>UsePostgres</c> here.</summary>
/// <param name="services">The service collection being configured.</param>
public sealed class UsageBillingBuilder(IServiceCollection services)
{
    /// <summary>The service collection being configured.</summary>
    public IServiceCollection Services { get; } = services;
}
