using UsageBilling.StripeEmulator;

namespace UsageBilling.Web.Hosting;

/// <summary>How the app reaches Stripe: the real API (a key is configured) or the in-process emulator.</summary>
/// <param name="emulated">Whether no key is configured, so the emulator is used.</param>
internal sealed class StripeAccess(bool emulated) : IAsyncDisposable
{
    /// <summary>The in-process emulator, once started.</summary>
    public StripeEmulatorServer? Emulator { get; private set; }

    /// <summary>How far back the emulator's clock started (so the demo subscription has history); zero otherwise.</summary>
    public TimeSpan ClockShift { get; private set; }

    public bool IsEmulated { get; } = emulated;

    public void Started(StripeEmulatorServer emulator, TimeSpan clockShift)
    {
        Emulator = emulator;
        ClockShift = clockShift;
    }

    /// <summary>Moves the emulator's clock forward to the real time once the demo is seeded.</summary>
    public async Task CatchUpClockAsync(CancellationToken ct)
    {
        if (Emulator is not null && ClockShift > TimeSpan.Zero)
        {
            await Emulator.Admin.AdvanceClockAsync(ClockShift, ct);
            ClockShift = TimeSpan.Zero;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Emulator is not null)
        {
            await Emulator.DisposeAsync();
        }
    }
}

/// <summary>The app's clock moved back by a fixed amount: the emulator starts "in the past" to seed the demo's history.</summary>
/// <param name="inner">The app's clock.</param>
/// <param name="shift">How far back.</param>
internal sealed class ShiftedTimeProvider(TimeProvider inner, TimeSpan shift) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow() - shift;

    public override long GetTimestamp() => inner.GetTimestamp();

    public override long TimestampFrequency => inner.TimestampFrequency;
}
