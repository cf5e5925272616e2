using UsageBilling;

// In OpenTelemetry's namespace, as OpenTelemetry's own instrumentations are: the call is found where the builder is.
namespace OpenTelemetry.Metrics;

/// <summary>Adds UsageBilling's instruments to an OpenTelemetry meter provider.</summary>
public static class UsageBillingMeterProviderBuilderExtensions
{
    /// <summary>
    /// Listens to the <c>UsageBilling</c> meter (<see cref="UsageBillingMetrics.Name"/>): recorder batch sizes,
    /// events claimed, reports sent / retried / dead, Stripe call duration, pending events and the age of the
    /// oldest unreported usage (instrument names in <c>docs/architecture.md</c>, Telemetry).
    /// </summary>
    /// <param name="builder">The meter provider builder.</param>
    /// <returns>The same builder.</returns>
    public static MeterProviderBuilder AddUsageBillingInstrumentation(this MeterProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddMeter(UsageBillingMetrics.Name);
    }
}
