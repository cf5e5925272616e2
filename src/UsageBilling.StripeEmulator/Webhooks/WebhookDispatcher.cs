using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using UsageBilling.StripeEmulator.Admin;
using UsageBilling.StripeEmulator.State;

namespace UsageBilling.StripeEmulator.Webhooks;

/// <summary>
/// Delivers events to endpoints in the background, signed like Stripe (<c>Stripe-Signature: t=…,v1=…</c>),
/// in order per endpoint, retrying failures after <see cref="StripeEmulatorOptions.WebhookRetryDelays"/>.
/// </summary>
internal sealed partial class WebhookDispatcher : IAsyncDisposable
{
    private readonly Channel<Delivery> _queue = Channel.CreateUnbounded<Delivery>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentQueue<WebhookDeliveryInfo> _log = new();
    private readonly ConcurrentDictionary<string, int> _outstanding = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(10) };
    private readonly IReadOnlyList<TimeSpan> _retryDelays;
    private readonly Func<long> _signingTime;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _pending;

    public WebhookDispatcher(Func<long> signingTime, IReadOnlyList<TimeSpan> retryDelays, ILogger logger)
    {
        _signingTime = signingTime;
        _retryDelays = [.. retryDelays];
        _logger = logger;
        _loop = Task.Run(RunAsync);
    }

    public IReadOnlyList<WebhookDeliveryInfo> Deliveries => [.. _log];

    /// <summary>Deliveries queued or being retried; a delivery leaves it after its event's <see cref="EventSettled"/> ran.</summary>
    public int Pending => Volatile.Read(ref _pending);

    /// <summary>
    /// Called with an event's id once every delivery of it has settled: succeeded, or failed its last attempt. Set only
    /// when something waits on deliveries. Runs on the delivery loop, outside any lock of the dispatcher, before the
    /// last delivery is logged; deliveries wait while it runs, so it must not wait on them.
    /// </summary>
    public Action<string>? EventSettled { get; set; }

    /// <summary>Queues one delivery of <paramref name="record"/> per endpoint; the event settles when all of them have.</summary>
    public void Enqueue(IReadOnlyList<WebhookEndpoint> endpoints, EventRecord record)
    {
        if (endpoints.Count == 0)
        {
            return;
        }

        // Counted (when something waits on settling) before any is queued, so a first delivery that settles at once
        // cannot settle the event early.
        if (EventSettled is not null)
        {
            _outstanding[record.Id] = endpoints.Count;
        }

        Interlocked.Add(ref _pending, endpoints.Count);
        var body = record.Body.ToJsonString();
        foreach (var ep in endpoints)
        {
            _queue.Writer.TryWrite(new Delivery(ep.Id, ep.Url, ep.Secret, record.Id, record.Type, body, 1));
        }
    }

    public void ClearLog() => _log.Clear();

    /// <summary>Stripe's signature: HMAC-SHA256 over "<c>{t}.{payload}</c>" keyed with the whole <c>whsec_</c> secret.</summary>
    public static string Sign(string payload, string secret, long timestamp)
    {
        var t = timestamp.ToString(CultureInfo.InvariantCulture);
        var mac = HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes($"{t}.{payload}"));
        return $"t={t},v1={Convert.ToHexStringLower(mac)}";
    }

    private async Task RunAsync()
    {
        try
        {
            await foreach (var d in _queue.Reader.ReadAllAsync(_stop.Token))
            {
                var status = 0;
                try
                {
                    using var req = new HttpRequestMessage(HttpMethod.Post, d.Url)
                    {
                        Content = new StringContent(d.Body, Encoding.UTF8, "application/json"),
                    };
                    req.Headers.TryAddWithoutValidation("Stripe-Signature", Sign(d.Body, d.Secret, _signingTime()));
                    req.Headers.TryAddWithoutValidation("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)");
                    using var resp = await _http.SendAsync(req, _stop.Token);
                    status = (int)resp.StatusCode;
                }
                // A refused connection is a failed delivery even while stopping (the receiver may stop first);
                // only a cancellation caused by our own stop ends the loop.
                catch (Exception ex) when (ex is HttpRequestException || (ex is TaskCanceledException && !_stop.IsCancellationRequested))
                {
                    LogDeliveryFailed(_logger, d.EventId, d.Url, ex.Message);
                }

                var ok = status is >= 200 and < 300;
                var info = new WebhookDeliveryInfo(d.EventId, d.Type, d.EndpointId, d.Attempt, status, ok);
                if (!ok && d.Attempt <= _retryDelays.Count)
                {
                    _log.Enqueue(info);
                    _ = RetryLaterAsync(d with { Attempt = d.Attempt + 1 }, _retryDelays[d.Attempt - 1]);
                }
                else
                {
                    // Settled before it is logged and counted done: whoever sees the delivery in the log or the
                    // pending count at 0 sees what settling it did (a waiting draft's finalization time).
                    Settle(d.EventId);
                    _log.Enqueue(info);
                    Interlocked.Decrement(ref _pending);
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    private void Settle(string eventId)
    {
        if (EventSettled is not { } settled || _outstanding.AddOrUpdate(eventId, 0, (_, n) => n - 1) > 0)
        {
            return;
        }

        _outstanding.TryRemove(eventId, out _);
        try
        {
            settled(eventId);
        }
        catch (Exception ex)
        {
            LogSettleFailed(_logger, eventId, ex.Message);
        }
    }

    private async Task RetryLaterAsync(Delivery d, TimeSpan delay)
    {
        try
        {
            await Task.Delay(delay, _stop.Token);
            _queue.Writer.TryWrite(d);
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }

        _http.Dispose();
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Webhook delivery of {EventId} to {Url} failed: {Reason}")]
    private static partial void LogDeliveryFailed(ILogger logger, string eventId, string url, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "Settling the deliveries of {EventId} failed: {Reason}")]
    private static partial void LogSettleFailed(ILogger logger, string eventId, string reason);

    private sealed record Delivery(string EndpointId, string Url, string Secret, string EventId, string Type, string Body, int Attempt);
}
