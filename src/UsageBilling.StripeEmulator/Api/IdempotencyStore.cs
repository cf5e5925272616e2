using System.Collections.Concurrent;
using Microsoft.AspNetCore.Http;

namespace UsageBilling.StripeEmulator.Api;

/// <summary>A response as it goes out (with a fresh <c>Request-Id</c> each time), kept for <c>Idempotency-Key</c> replays.</summary>
internal sealed record ApiResponse(int Status, byte[] Body, IReadOnlyList<KeyValuePair<string, string>> Headers) : IResult
{
    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var http = httpContext.Response;
        http.StatusCode = Status;
        http.Headers["Request-Id"] = State.StripeBackend.NewId("req_", 14);
        http.Headers["Stripe-Version"] = State.StripeBackend.ApiVersion;
        http.ContentType = "application/json";
        foreach (var (name, value) in Headers)
        {
            http.Headers[name] = value;
        }

        http.ContentLength = Body.Length;
        await http.Body.WriteAsync(Body, httpContext.RequestAborted);
    }
}

/// <summary>Results of POSTs by (API key, Idempotency-Key), replayed for the idempotency window.</summary>
internal sealed class IdempotencyStore
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private long _nextPurge;

    public sealed class Entry(string fingerprint, long created)
    {
        public string Fingerprint { get; } = fingerprint;

        public long Created { get; } = created;

        public ApiResponse? Response { get; set; }
    }

    /// <summary>Claims the key for this request, or returns the existing entry (finished or in flight).</summary>
    public (Entry Entry, bool IsNew) Begin(string scopedKey, string fingerprint, long now, long windowSeconds)
    {
        if (now >= Interlocked.Read(ref _nextPurge))
        {
            Interlocked.Exchange(ref _nextPurge, now + 60);
            foreach (var (k, e) in _entries)
            {
                if (e.Created <= now - windowSeconds && e.Response is not null)
                {
                    _entries.TryRemove(k, out _);
                }
            }
        }

        while (true)
        {
            var fresh = new Entry(fingerprint, now);
            var entry = _entries.GetOrAdd(scopedKey, fresh);
            if (ReferenceEquals(entry, fresh))
            {
                return (fresh, true);
            }

            if (entry.Created > now - windowSeconds || entry.Response is null)
            {
                return (entry, false);
            }

            // Expired: the key may be reused.
            _entries.TryRemove(new KeyValuePair<string, Entry>(scopedKey, entry));
        }
    }

    public void Abandon(string scopedKey, Entry entry) => _entries.TryRemove(new KeyValuePair<string, Entry>(scopedKey, entry));

    public void Clear() => _entries.Clear();
}
