using System.Globalization;
using System.Net.Http.Json;

namespace UsageBilling.StripeEmulator.Admin;

/// <summary>Drives an emulator running in another process through its HTTP admin API (<c>/_emulator/…</c>).</summary>
public sealed class EmulatorAdminClient : IStripeEmulatorAdmin
{
    private readonly HttpClient _http;

    private readonly string _adminToken;

    /// <summary>
    /// Creates a client for the emulator at <paramref name="baseUrl"/> (e.g. <c>http://127.0.0.1:12111</c>) using
    /// <paramref name="httpClient"/>, sending <paramref name="adminToken"/> (the token the emulator printed at start,
    /// <see cref="StripeEmulatorServer.AdminToken"/> in-process) as <c>Authorization: Bearer</c> on every call.
    /// </summary>
    public EmulatorAdminClient(HttpClient httpClient, Uri baseUrl, string adminToken)
    {
        ArgumentNullException.ThrowIfNull(httpClient);
        ArgumentNullException.ThrowIfNull(baseUrl);
        ArgumentException.ThrowIfNullOrWhiteSpace(adminToken);
        _http = httpClient;
        _adminToken = adminToken;
        BaseUrl = new Uri(baseUrl.ToString().TrimEnd('/') + AdminEndpoints.Prefix + "/");
    }

    /// <summary>The admin API root, ending in <c>/_emulator/</c>.</summary>
    public Uri BaseUrl { get; }

    /// <inheritdoc/>
    public async Task<string> InjectFaultAsync(FaultSpec fault, CancellationToken cancellationToken = default) =>
        (await SendAsync<FaultCreated>(HttpMethod.Post, "faults", fault, cancellationToken)).Id;

    /// <inheritdoc/>
    public async Task<IReadOnlyList<FaultInfo>> GetFaultsAsync(CancellationToken cancellationToken = default) =>
        await SendAsync<List<FaultInfo>>(HttpMethod.Get, "faults", null, cancellationToken);

    /// <inheritdoc/>
    public Task ClearFaultsAsync(CancellationToken cancellationToken = default) => SendAsync(HttpMethod.Delete, "faults", null, cancellationToken);

    /// <inheritdoc/>
    public Task SetRateLimitAsync(double? requestsPerSecond, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Put, "rate_limit", new RateLimitRequest(requestsPerSecond), cancellationToken);

    /// <inheritdoc/>
    public Task SetConcurrencyEnforcementAsync(bool enforce, CancellationToken cancellationToken = default) =>
        SendAsync(HttpMethod.Put, "concurrency", new ConcurrencyRequest(enforce), cancellationToken);

    /// <inheritdoc/>
    public async Task<DateTimeOffset> GetNowAsync(CancellationToken cancellationToken = default) =>
        (await SendAsync<ClockResponse>(HttpMethod.Get, "clock", null, cancellationToken)).Now;

    /// <inheritdoc/>
    public async Task<DateTimeOffset> AdvanceClockAsync(TimeSpan by, CancellationToken cancellationToken = default) =>
        (await SendAsync<ClockResponse>(HttpMethod.Post, "clock/advance", new AdvanceClockRequest(by.TotalSeconds), cancellationToken)).Now;

    /// <inheritdoc/>
    public async Task<DateTimeOffset> SetClockAsync(DateTimeOffset to, CancellationToken cancellationToken = default) =>
        (await SendAsync<ClockResponse>(HttpMethod.Post, "clock/set", new SetClockRequest(to.ToUnixTimeSeconds()), cancellationToken)).Now;

    /// <inheritdoc/>
    public async Task<IReadOnlyList<AcceptedMeterEvent>> GetMeterEventsAsync(string? customerId = null, string? eventName = null, CancellationToken cancellationToken = default)
    {
        var query = new List<string>();
        if (customerId is not null)
        {
            query.Add("customer=" + Uri.EscapeDataString(customerId));
        }

        if (eventName is not null)
        {
            query.Add("event_name=" + Uri.EscapeDataString(eventName));
        }

        var path = query.Count == 0 ? "meter_events" : "meter_events?" + string.Join('&', query);
        return await SendAsync<List<AcceptedMeterEvent>>(HttpMethod.Get, path, null, cancellationToken);
    }

    /// <inheritdoc/>
    public async Task<decimal> GetMeterTotalAsync(string customerId, string meter, DateTimeOffset start, DateTimeOffset end, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(customerId);
        ArgumentException.ThrowIfNullOrEmpty(meter);
        var path = string.Create(CultureInfo.InvariantCulture,
            $"totals?customer={Uri.EscapeDataString(customerId)}&meter={Uri.EscapeDataString(meter)}&start={start.ToUnixTimeSeconds()}&end={end.ToUnixTimeSeconds()}");
        return (await SendAsync<TotalResponse>(HttpMethod.Get, path, null, cancellationToken)).Value;
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyDictionary<string, long>> GetRejectionCountsAsync(CancellationToken cancellationToken = default) =>
        await SendAsync<Dictionary<string, long>>(HttpMethod.Get, "rejections", null, cancellationToken);

    /// <inheritdoc/>
    public async Task<IReadOnlyList<MeterEventRequestCount>> GetMeterEventRequestsAsync(CancellationToken cancellationToken = default) =>
        await SendAsync<List<MeterEventRequestCount>>(HttpMethod.Get, "meter_event_requests", null, cancellationToken);

    /// <inheritdoc/>
    public async Task<WebhookEndpointInfo> AddWebhookEndpointAsync(Uri url, IReadOnlyList<string>? enabledEvents = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(url);
        return await SendAsync<WebhookEndpointInfo>(HttpMethod.Post, "webhook_endpoints", new AddWebhookEndpointRequest(url.ToString(), enabledEvents), cancellationToken);
    }

    /// <inheritdoc/>
    public async Task<IReadOnlyList<WebhookDeliveryInfo>> GetWebhookDeliveriesAsync(CancellationToken cancellationToken = default) =>
        await SendAsync<List<WebhookDeliveryInfo>>(HttpMethod.Get, "webhook_deliveries", null, cancellationToken);

    /// <inheritdoc/>
    public async Task<CheckoutCompletion> CompleteCheckoutSessionAsync(string sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(sessionId);
        return await SendAsync<CheckoutCompletion>(HttpMethod.Post, $"checkout_sessions/{Uri.EscapeDataString(sessionId)}/complete", null, cancellationToken);
    }

    /// <inheritdoc/>
    public Task ResetAsync(CancellationToken cancellationToken = default) => SendAsync(HttpMethod.Post, "reset", null, cancellationToken);

    /// <inheritdoc/>
    public async Task<int> ExpireMeterEventSessionsAsync(CancellationToken cancellationToken = default) =>
        (await SendAsync<ExpiredSessionsResponse>(HttpMethod.Post, "meter_event_sessions/expire", null, cancellationToken)).Expired;

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var response = await SendCoreAsync(method, path, body, ct);
        return await response.Content.ReadFromJsonAsync<T>(AdminJson.Options, ct)
            ?? throw new InvalidOperationException($"The emulator answered {method} {path} with an empty body.");
    }

    private async Task SendAsync(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var response = await SendCoreAsync(method, path, body, ct);
    }

    private async Task<HttpResponseMessage> SendCoreAsync(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, new Uri(BaseUrl, path));
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", _adminToken);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType(), options: AdminJson.Options);
        }

        var response = await _http.SendAsync(request, ct);
        if (!response.IsSuccessStatusCode)
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            response.Dispose();
            throw new HttpRequestException($"Emulator admin {method} {path} failed with {(int)response.StatusCode}: {text}", null, response.StatusCode);
        }

        return response;
    }
}
