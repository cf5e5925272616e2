using UsageBilling.StripeEmulator.Api;
using UsageBilling.StripeEmulator.State;
using UsageBilling.StripeEmulator.Webhooks;

namespace UsageBilling.StripeEmulator.Admin;

/// <summary>In-process control of an emulator: direct method calls, no HTTP.</summary>
public sealed class EmulatorAdmin : IStripeEmulatorAdmin
{
    private readonly StripeBackend _backend;
    private readonly EmulatorRuntime _runtime;
    private readonly IdempotencyStore _idempotency;
    private readonly WebhookDispatcher _webhooks;

    internal EmulatorAdmin(StripeBackend backend, EmulatorRuntime runtime, IdempotencyStore idempotency, WebhookDispatcher webhooks)
    {
        _backend = backend;
        _runtime = runtime;
        _idempotency = idempotency;
        _webhooks = webhooks;
    }

    /// <summary>The emulated state, for the hosted checkout page.</summary>
    internal StripeBackend Backend => _backend;

    /// <summary>Webhook deliveries queued or awaiting a retry.</summary>
    public int PendingWebhookDeliveries => _webhooks.Pending;

    /// <inheritdoc/>
    public Task<string> InjectFaultAsync(FaultSpec fault, CancellationToken cancellationToken = default) =>
        Task.FromResult(_runtime.AddFault(fault));

    /// <inheritdoc/>
    public Task<IReadOnlyList<FaultInfo>> GetFaultsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_runtime.Faults);

    /// <inheritdoc/>
    public Task ClearFaultsAsync(CancellationToken cancellationToken = default)
    {
        _runtime.ClearFaults();
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task SetRateLimitAsync(double? requestsPerSecond, CancellationToken cancellationToken = default)
    {
        _runtime.SetRateLimit(requestsPerSecond);
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task SetConcurrencyEnforcementAsync(bool enforce, CancellationToken cancellationToken = default)
    {
        _runtime.EnforceConcurrency = enforce;
        return Task.CompletedTask;
    }

    /// <inheritdoc/>
    public Task<DateTimeOffset> GetNowAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_runtime.Clock.GetUtcNow());

    /// <inheritdoc/>
    public Task<DateTimeOffset> AdvanceClockAsync(TimeSpan by, CancellationToken cancellationToken = default)
    {
        _runtime.Clock.Advance(by);
        _backend.ProcessDue(_backend.Now);
        return Task.FromResult(_runtime.Clock.GetUtcNow());
    }

    /// <inheritdoc/>
    public Task<DateTimeOffset> SetClockAsync(DateTimeOffset to, CancellationToken cancellationToken = default)
    {
        _runtime.Clock.Set(to);
        _backend.ProcessDue(_backend.Now);
        return Task.FromResult(_runtime.Clock.GetUtcNow());
    }

    /// <inheritdoc/>
    public Task<IReadOnlyList<AcceptedMeterEvent>> GetMeterEventsAsync(string? customerId = null, string? eventName = null, CancellationToken cancellationToken = default) =>
        Task.FromResult(_backend.Meters.AcceptedEvents(customerId, eventName));

    /// <inheritdoc/>
    public Task<decimal> GetMeterTotalAsync(string customerId, string meter, DateTimeOffset start, DateTimeOffset end, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(customerId);
        ArgumentException.ThrowIfNullOrEmpty(meter);
        return Task.FromResult(_backend.Meters.Total(customerId, meter, start.ToUnixTimeSeconds(), end.ToUnixTimeSeconds()));
    }

    /// <inheritdoc/>
    public Task<IReadOnlyDictionary<string, long>> GetRejectionCountsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_runtime.Rejections);

    /// <inheritdoc/>
    public Task<IReadOnlyList<MeterEventRequestCount>> GetMeterEventRequestsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_runtime.MeterEventRequests);

    /// <inheritdoc/>
    public Task<int> ExpireMeterEventSessionsAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_backend.Meters.ExpireSessions());

    /// <inheritdoc/>
    public Task<WebhookEndpointInfo> AddWebhookEndpointAsync(Uri url, IReadOnlyList<string>? enabledEvents = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        if (!url.IsAbsoluteUri)
        {
            throw new ArgumentException("The URL must be absolute.", nameof(url));
        }

        return Task.FromResult(_backend.Webhooks.AddEndpoint(url, enabledEvents));
    }

    /// <inheritdoc/>
    public Task<IReadOnlyList<WebhookDeliveryInfo>> GetWebhookDeliveriesAsync(CancellationToken cancellationToken = default) =>
        Task.FromResult(_webhooks.Deliveries);

    /// <inheritdoc/>
    public Task<CheckoutCompletion> CompleteCheckoutSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sessionId);
        try
        {
            return Task.FromResult(_backend.Checkout.CompleteCheckoutSession(sessionId));
        }
        catch (StripeApiException ex) when (ex.Status == 404)
        {
            throw new KeyNotFoundException(ex.Message, ex);
        }
        catch (StripeApiException ex)
        {
            throw new InvalidOperationException(ex.Message, ex);
        }
    }

    /// <inheritdoc/>
    public Task ResetAsync(CancellationToken cancellationToken = default)
    {
        _backend.Reset();
        _runtime.ResetRuntime();
        _idempotency.Clear();
        _webhooks.ClearLog();
        return Task.CompletedTask;
    }
}
