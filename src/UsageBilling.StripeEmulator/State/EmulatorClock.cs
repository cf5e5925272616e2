namespace UsageBilling.StripeEmulator.State;

/// <summary>The emulator's clock: the injected provider plus an offset that the admin API moves forward.</summary>
internal sealed class EmulatorClock : TimeProvider
{
    private readonly TimeProvider _inner;
    private long _offsetTicks;

    public EmulatorClock(TimeProvider inner) => _inner = inner;

    public TimeSpan Offset => TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));

    public override DateTimeOffset GetUtcNow() => _inner.GetUtcNow() + Offset;

    public override long GetTimestamp() => _inner.GetTimestamp();

    public override long TimestampFrequency => _inner.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => _inner.LocalTimeZone;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        _inner.CreateTimer(callback, state, dueTime, period);

    public void Advance(TimeSpan by)
    {
        if (by < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(by), by, "The clock only moves forward.");
        }

        Interlocked.Add(ref _offsetTicks, by.Ticks);
    }

    public void Set(DateTimeOffset to)
    {
        var now = GetUtcNow();
        if (to < now)
        {
            throw new ArgumentOutOfRangeException(nameof(to), to, "The clock only moves forward.");
        }

        Advance(to - now);
    }
}
