using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace UsageBilling;

/// <summary>Registers the flusher: <c>AddUsageBilling(...).UseSqlite(cs).UseStripe(section).AddFlusher(section)</c>.</summary>
public static class FlushRegistration
{
    /// <summary>Adds the flusher, its background service and its health check (<c>usagebilling-flush</c>), configured in code.</summary>
    /// <param name="builder">The UsageBilling builder; Stripe must be configured with <c>UseStripe</c>.</param>
    /// <param name="configure">Optional tuning.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder AddFlusher(this UsageBillingBuilder builder, Action<FlushOptions>? configure = null) =>
        builder.AddFlusherCore(o => o.Configure(x => configure?.Invoke(x)));

    /// <summary>Adds the flusher bound to a configuration section (usually <c>UsageBilling:Flush</c>).</summary>
    /// <param name="builder">The UsageBilling builder; Stripe must be configured with <c>UseStripe</c>.</param>
    /// <param name="section">The section.</param>
    /// <returns>The builder.</returns>
    public static UsageBillingBuilder AddFlusher(this UsageBillingBuilder builder, IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(section);
        return builder.AddFlusherCore(o => o.Bind(section));
    }

    private static UsageBillingBuilder AddFlusherCore(this UsageBillingBuilder builder, Action<OptionsBuilder<FlushOptions>> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        var services = builder.Services;
        configure(services.AddOptionsWithValidateOnStart<FlushOptions>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<FlushOptions>, FlushOptionsValidator>());
        services.TryAddSingleton<FlushState>();
        services.TryAddSingleton<IMeterEventSender, StripeMeterEventSender>();
        services.TryAddSingleton<IMeterEventStreamSender, StripeMeterEventStreamSender>();
        services.TryAddSingleton<IStripeMeterDirectory, StripeMeterDirectory>();
        services.TryAddSingleton<IUsageFlusher, UsageFlusher>();
        services.AddHostedService<UsageFlushBackgroundService>();
        services.AddHealthChecks().AddCheck<FlushHealthCheck>("usagebilling-flush", tags: ["usagebilling"]);
        return builder;
    }
}

/// <summary>Fails at start on flush settings that cannot work.</summary>
internal sealed class FlushOptionsValidator(IOptions<StripeOptions> stripe) : IValidateOptions<FlushOptions>
{
    public ValidateOptionsResult Validate(string? name, FlushOptions options)
    {
        var errors = new List<string>();
        var call = stripe.Value.MaxCallDuration;
        if (options.LeaseDuration <= call)
        {
            errors.Add($"UsageBilling:Flush:LeaseDuration ({options.LeaseDuration}) must be longer than one Stripe call's worst case, {call} (Stripe:Timeout {stripe.Value.Timeout} × (Stripe:MaxNetworkRetries {stripe.Value.MaxNetworkRetries} + 1) + 5 s × retries): a send may only start while its lease outlasts it.");
        }

        if (!Enum.IsDefined(options.Transport))
        {
            errors.Add($"UsageBilling:Flush:Transport must be {string.Join(" or ", Enum.GetNames<FlushTransport>())}, was {(int)options.Transport}.");
        }

        if (options.MarkBatchSize is < 1 or > 1000)
        {
            errors.Add("UsageBilling:Flush:MarkBatchSize must be between 1 and 1000.");
        }

        if (options.Interval < TimeSpan.FromSeconds(1) || options.Interval > TimeSpan.FromHours(1))
        {
            errors.Add("UsageBilling:Flush:Interval must be between 1 second and 1 hour.");
        }

        if (options.ClaimBatchSize is < 1 or > 100_000)
        {
            errors.Add("UsageBilling:Flush:ClaimBatchSize must be between 1 and 100000.");
        }

        if (options.SendBatchSize is < 1 or > 10_000)
        {
            errors.Add("UsageBilling:Flush:SendBatchSize must be between 1 and 10000.");
        }

        if (options.MaxConcurrentCalls is < 1 or > 256)
        {
            errors.Add("UsageBilling:Flush:MaxConcurrentCalls must be between 1 and 256.");
        }

        if (options.RequestsPerSecond is <= 0 or > 100_000)
        {
            errors.Add("UsageBilling:Flush:RequestsPerSecond must be positive (and at most 100000).");
        }

        if (options.LeaseDuration < TimeSpan.FromSeconds(1))
        {
            errors.Add("UsageBilling:Flush:LeaseDuration must be at least 1 second.");
        }

        if (options.RetryBaseDelay <= TimeSpan.Zero || options.RetryMaxDelay < options.RetryBaseDelay)
        {
            errors.Add("UsageBilling:Flush:RetryBaseDelay must be positive and not above RetryMaxDelay.");
        }

        if (options.ReviewAfter <= TimeSpan.Zero || options.ReviewAfter >= TimeSpan.FromHours(24))
        {
            errors.Add("UsageBilling:Flush:ReviewAfter must be positive and below 24 hours (Stripe keeps identifiers at least 24 h).");
        }

        if (options.MaxEventAge <= TimeSpan.Zero || options.MaxEventAge > TimeSpan.FromDays(35))
        {
            errors.Add("UsageBilling:Flush:MaxEventAge must be positive and at most 35 days.");
        }

        if (options.MaxLag <= TimeSpan.Zero)
        {
            errors.Add("UsageBilling:Flush:MaxLag must be positive.");
        }

        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
