using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace UsageBilling.Benchmarks;

/// <summary>
/// Splits a flush into its phases from the library's own instruments: the claim phase ends with the
/// last <c>usagebilling.flush.events_claimed</c> measurement, the send phase with the last
/// <c>usagebilling.stripe.call_duration</c> measurement (one per Stripe call, recorded when it returns).
/// </summary>
internal sealed class PhaseListener : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly long _start = Stopwatch.GetTimestamp();
    private long _lastClaim;
    private long _firstCall;
    private long _lastCall;
    private long _calls;

    public PhaseListener()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == UsageBillingMetrics.Name && instrument.Name is "usagebilling.flush.events_claimed" or "usagebilling.stripe.call_duration")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, _, _, _) =>
        {
            if (instrument.Name == "usagebilling.flush.events_claimed")
            {
                Interlocked.Exchange(ref _lastClaim, Stopwatch.GetTimestamp());
            }
        });
        _listener.SetMeasurementEventCallback<double>((instrument, _, _, _) =>
        {
            var now = Stopwatch.GetTimestamp();
            Interlocked.CompareExchange(ref _firstCall, now, 0);
            Interlocked.Exchange(ref _lastCall, now);
            Interlocked.Increment(ref _calls);
        });
        _listener.Start();
    }

    /// <summary>From the start to the end of the last claim batch.</summary>
    public TimeSpan ClaimPhase => _lastClaim == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(_start, _lastClaim);

    /// <summary>From the end of the claim phase to the return of the last Stripe call.</summary>
    public TimeSpan SendPhase => _lastCall == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(_lastClaim == 0 ? _start : _lastClaim, _lastCall);

    public long Calls => Interlocked.Read(ref _calls);

    public void Dispose() => _listener.Dispose();
}
