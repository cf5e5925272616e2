using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace UsageBilling;

/// <summary>The library's one <see cref="Meter"/> and one <see cref="ActivitySource"/>, named <c>UsageBilling</c>.</summary>
internal sealed class UsageBillingMetrics : IDisposable
{
    /// <summary>The name of the meter and of the activity source.</summary>
    public const string Name = "UsageBilling";

    private readonly Meter _meter;

    /// <summary>Creates the instruments from the host's meter factory.</summary>
    /// <param name="meterFactory">The host's meter factory.</param>
    public UsageBillingMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        _meter = meterFactory.Create(Name);
        RecordBatchSize = _meter.CreateHistogram<int>("usagebilling.record.batch_size", "{event}", "Events written per group-commit transaction.");
    }

    /// <summary>The activity source for traces of flushes and Stripe calls.</summary>
    public static ActivitySource ActivitySource { get; } = new(Name);

    /// <summary>The meter, for instruments other components add.</summary>
    public Meter Meter => _meter;

    /// <summary>Events written per group-commit transaction.</summary>
    public Histogram<int> RecordBatchSize { get; }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
