using System.Collections.Concurrent;
using UsageBilling.StripeEmulator.Admin;

namespace UsageBilling.StripeEmulator.State;

/// <summary>Mutable run-time settings and counters shared by the pipeline and the admin API.</summary>
internal sealed class EmulatorRuntime
{
    private readonly Lock _faultGate = new();
    private readonly List<(string Id, FaultSpec Spec, int Remaining)> _faults = [];
    private readonly ConcurrentDictionary<string, long> _rejections = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _inFlight = new(StringComparer.Ordinal);
    private readonly RateBucket _global;
    private readonly RateBucket _meterEvents;
    private readonly RateBucket _stream;

    public EmulatorRuntime(StripeEmulatorOptions options)
    {
        Options = options;
        Clock = new EmulatorClock(options.TimeProvider);
        EnforceConcurrency = options.EnforceConcurrencyPerCustomerMeter;
        _global = new RateBucket(Clock);
        _meterEvents = new RateBucket(Clock);
        _stream = new RateBucket(Clock);
        SetRateLimits();
    }

    public StripeEmulatorOptions Options { get; }

    public EmulatorClock Clock { get; }

    /// <summary>The emulator's root URL once it listens (for <c>hosted_invoice_url</c>); <see langword="null"/> before.</summary>
    public volatile string? PublicRoot;

    public volatile bool EnforceConcurrency;

    // ------------------------------------------------------------ rejections

    public void Reject(string reason) => _rejections.AddOrUpdate(reason, 1, static (_, n) => n + 1);

    public IReadOnlyDictionary<string, long> Rejections => new Dictionary<string, long>(_rejections, StringComparer.Ordinal);

    // ------------------------------------------------------------ meter-event requests per identifier (whatever the answer)

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Identifier, string ApiKey), long> _meterEventRequests = new();

    public void CountMeterEventRequest(string identifier, string apiKey) => _meterEventRequests.AddOrUpdate((identifier, apiKey), 1, static (_, n) => n + 1);

    public IReadOnlyList<Admin.MeterEventRequestCount> MeterEventRequests =>
        [.. _meterEventRequests.Select(r => new Admin.MeterEventRequestCount(r.Key.Identifier, r.Key.ApiKey, r.Value)).OrderBy(r => r.Identifier, StringComparer.Ordinal).ThenBy(r => r.ApiKey, StringComparer.Ordinal)];

    // ------------------------------------------------------------ rate limits (token buckets on the injected clock's timestamps)

    /// <summary>Sets the account-wide limit every v1 request shares (the admin API's rate limit).</summary>
    public void SetRateLimit(double? perSecond) => _global.Set(perSecond);

    /// <summary>One request's token from the account-wide bucket.</summary>
    public bool TryTakeRateToken() => _global.TryTake();

    /// <summary>One token from the bucket of <c>POST /v1/billing/meter_events</c> alone (live mode: 1 000/s).</summary>
    public bool TryTakeMeterEventToken() => _meterEvents.TryTake();

    /// <summary>One token from the bucket of <c>POST /v2/billing/meter_event_stream</c> (live mode: 10 000 requests/s).</summary>
    public bool TryTakeStreamToken() => _stream.TryTake();

    /// <summary>A token bucket holding at most one second's worth of tokens; <see langword="null"/> rate = unlimited.</summary>
    private sealed class RateBucket(EmulatorClock clock)
    {
        private readonly Lock _gate = new();
        private double _tokens;
        private long _lastRefill;
        private double? _rate;

        public void Set(double? perSecond)
        {
            if (perSecond is <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(perSecond), perSecond, "Must be positive or null.");
            }

            lock (_gate)
            {
                _rate = perSecond;
                _tokens = perSecond ?? 0;
                _lastRefill = clock.GetTimestamp();
            }
        }

        public bool TryTake()
        {
            if (_rate is null)
            {
                return true;
            }

            lock (_gate)
            {
                if (_rate is not { } rate)
                {
                    return true;
                }

                var now = clock.GetTimestamp();
                var elapsed = clock.GetElapsedTime(_lastRefill, now).TotalSeconds;
                _lastRefill = now;
                _tokens = Math.Min(rate, _tokens + (elapsed * rate));
                if (_tokens >= 1)
                {
                    _tokens -= 1;
                    return true;
                }

                return false;
            }
        }
    }

    // ------------------------------------------------------------ per customer·meter concurrency

    public bool TryEnter(string key) => _inFlight.TryAdd(key, 0);

    public void Exit(string key) => _inFlight.TryRemove(key, out _);

    // ------------------------------------------------------------ faults

    public string AddFault(FaultSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (string.IsNullOrWhiteSpace(spec.Path) || !spec.Path.StartsWith('/'))
        {
            throw new ArgumentException("Path must start with '/'.", nameof(spec));
        }

        if (spec.Count < 1)
        {
            throw new ArgumentException("Count must be at least 1.", nameof(spec));
        }

        if (spec.DelayMilliseconds < 0)
        {
            throw new ArgumentException("DelayMilliseconds must not be negative.", nameof(spec));
        }

        var id = StripeBackend.NewId("flt_", 12);
        lock (_faultGate)
        {
            _faults.Add((id, spec, spec.Count));
        }

        return id;
    }

    public void ClearFaults()
    {
        lock (_faultGate)
        {
            _faults.Clear();
        }
    }

    public IReadOnlyList<FaultInfo> Faults
    {
        get
        {
            lock (_faultGate)
            {
                return _faults.Select(f => new FaultInfo(f.Id, f.Spec, f.Remaining)).ToList();
            }
        }
    }

    /// <summary>Takes one use of the first fault matching this request, if any.</summary>
    public FaultSpec? TakeFault(string method, string path)
    {
        lock (_faultGate)
        {
            if (_faults.Count == 0)
            {
                return null;
            }

            for (var i = 0; i < _faults.Count; i++)
            {
                var (id, spec, remaining) = _faults[i];
                if (!Matches(spec, method, path))
                {
                    continue;
                }

                if (remaining <= 1)
                {
                    _faults.RemoveAt(i);
                }
                else
                {
                    _faults[i] = (id, spec, remaining - 1);
                }

                return spec;
            }

            return null;
        }
    }

    private static bool Matches(FaultSpec spec, string method, string path)
    {
        if (spec.Method is not null && !string.Equals(spec.Method, method, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        return spec.Path.EndsWith('*')
            ? path.StartsWith(spec.Path[..^1], StringComparison.Ordinal)
            : string.Equals(spec.Path, path, StringComparison.Ordinal);
    }

    public void ResetRuntime()
    {
        ClearFaults();
        _rejections.Clear();
        _meterEventRequests.Clear();
        _inFlight.Clear();
        EnforceConcurrency = Options.EnforceConcurrencyPerCustomerMeter;
        SetRateLimits();
    }

    private void SetRateLimits()
    {
        _global.Set(Options.RateLimitPerSecond);
        _meterEvents.Set(Options.MeterEventRateLimitPerSecond);
        _stream.Set(Options.MeterEventStreamRateLimitPerSecond);
    }
}
