using UsageBilling;

// In OpenTelemetry's namespace, as OpenTelemetry's own instrumentations are: the call is found where the builder is.
namespace OpenTelemetry.Trace;

/// <summary>Adds UsageBilling's traces to an OpenTelemetry tracer provider.</summary>
public static class UsageBillingTracerProviderBuilderExtensions
{
    /// <summary>
    /// Listens to the <c>UsageBilling</c> activity source (<see cref="UsageBillingMetrics.ActivitySource"/>):
    /// one span per flush (<c>usagebilling.flush</c>, <c>usagebilling.flush_customer</c>), the Stripe calls inside
    /// it traced by whatever HTTP instrumentation the app adds.
    /// </summary>
    /// <param name="builder">The tracer provider builder.</param>
    /// <returns>The same builder.</returns>
    public static TracerProviderBuilder AddUsageBillingInstrumentation(this TracerProviderBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.AddSource(UsageBillingMetrics.Name);
    }
}
