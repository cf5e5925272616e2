using System.Buffers;
using System.Text.Json;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// <c>POST /api/v1/usage</c>: authenticates the API key, rate-limits per key, reads at most
/// <see cref="UsageIngestionOptions.MaxBodyBytes"/>, checks the whole body (1–1000 events, every account the key's),
/// then records every event through the recorder (limits enforced, idempotent) and answers one result per event.
/// Whole-body problems are ProblemDetails 4xx and write nothing; a database failure is a 503 the caller retries with
/// the same idempotency keys (what was recorded answers <c>duplicate</c>). Never a 500.
/// </summary>
internal sealed partial class UsageIngestionEndpoint : IDisposable
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { AllowTrailingCommas = false };

    private readonly IUsageApiKeys _keys;
    private readonly GroupCommitUsageRecorder _recorder;
    private readonly IBillingAccountStore _accounts;
    private readonly UsageIngestionOptions _options;
    private readonly ILogger<UsageIngestionEndpoint> _logger;
    private readonly PartitionedRateLimiter<Guid> _limiter;

    public UsageIngestionEndpoint(IUsageApiKeys keys, GroupCommitUsageRecorder recorder, IBillingAccountStore accounts, IOptions<UsageIngestionOptions> options, ILogger<UsageIngestionEndpoint> logger)
    {
        _keys = keys;
        _recorder = recorder;
        _accounts = accounts;
        _options = options.Value;
        _logger = logger;
        var perSecond = _options.RequestsPerSecondPerKey;
        var burst = _options.BurstPerKey;
        _limiter = PartitionedRateLimiter.Create<Guid, Guid>(key => RateLimitPartition.GetTokenBucketLimiter(key, _ => new TokenBucketRateLimiterOptions
        {
            TokenLimit = burst,
            TokensPerPeriod = perSecond,
            ReplenishmentPeriod = TimeSpan.FromSeconds(1),
            QueueLimit = 0,
            AutoReplenishment = true,
        }));
    }

    public async Task<IResult> HandleAsync(HttpContext http, CancellationToken ct)
    {
        try
        {
            var key = await AuthenticateAsync(http.Request, ct).ConfigureAwait(false);
            using var lease = _limiter.AttemptAcquire(key.Id);
            if (!lease.IsAcquired)
            {
                http.Response.Headers.RetryAfter = "1";
                return Problem(StatusCodes.Status429TooManyRequests, "Too many requests", $"API key {key.Prefix}… may make {_options.RequestsPerSecondPerKey} requests per second (bursts of {_options.BurstPerKey}); retry after a second.");
            }

            var items = await ReadEventsAsync(http.Request, ct).ConfigureAwait(false);
            var users = await ResolveAccountsAsync(items, key, ct).ConfigureAwait(false);
            var results = await RecordAsync(items, users, ct).ConfigureAwait(false);
            return TypedResults.Ok(new UsageIngestionResponse(
                results,
                results.Count(r => r.Status == "recorded"),
                results.Count(r => r.Status == "duplicate"),
                results.Count(r => r.Status == "rejected")));
        }
        catch (IngestionRejection rejection)
        {
            if (rejection.Status == StatusCodes.Status401Unauthorized)
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
            }

            return Problem(rejection.Status, rejection.Title, rejection.Message);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            LogFailed(_logger, ex);
            return Problem(StatusCodes.Status503ServiceUnavailable, "Temporarily unable to record usage", "Retry the request with the same idempotency keys: events already recorded answer 'duplicate'.");
        }
    }

    private static IResult Problem(int status, string title, string detail) => TypedResults.Problem(statusCode: status, title: title, detail: detail);

    private async Task<UsageApiKeyInfo> AuthenticateAsync(HttpRequest request, CancellationToken ct)
    {
        var header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            throw new IngestionRejection(StatusCodes.Status401Unauthorized, "API key required", "Send an API key as 'Authorization: Bearer ubk_…' (create one with 'usagebilling api-keys create').");
        }

        return await _keys.AuthenticateAsync(header["Bearer ".Length..].Trim(), ct).ConfigureAwait(false)
            ?? throw new IngestionRejection(StatusCodes.Status401Unauthorized, "Invalid API key", "The API key is unknown or revoked.");
    }

    private async Task<List<UsageIngestionItem?>> ReadEventsAsync(HttpRequest request, CancellationToken ct)
    {
        var limit = _options.MaxBodyBytes;
        if (request.ContentLength > limit)
        {
            throw TooLarge(limit);
        }

        if (request.ContentType is { } type && !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            throw new IngestionRejection(StatusCodes.Status415UnsupportedMediaType, "Unsupported media type", "Send the events as application/json.");
        }

        // Read at most the cap plus one chunk, whatever the framing (a chunked body declares no length).
        var buffer = ArrayPool<byte>.Shared.Rent(64 * 1024);
        using var body = new MemoryStream();
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(buffer.AsMemory(0, Math.Min(buffer.Length, limit + 1 - (int)body.Length)), ct).ConfigureAwait(false)) > 0)
            {
                body.Write(buffer, 0, read);
                if (body.Length > limit)
                {
                    throw TooLarge(limit);
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        UsageIngestionRequest? parsed;
        try
        {
            parsed = JsonSerializer.Deserialize<UsageIngestionRequest>(body.GetBuffer().AsSpan(0, (int)body.Length), Json);
        }
        catch (JsonException ex)
        {
            throw new IngestionRejection(StatusCodes.Status400BadRequest, "Malformed JSON", $"The body is not a valid usage request: {ex.Message}");
        }

        var events = parsed?.Events ?? throw new IngestionRejection(StatusCodes.Status400BadRequest, "No events", "The body must be an object with an 'events' array.");
        if (events.Count is 0 or > UsageIngestionOptions.MaxEventsPerRequest)
        {
            throw new IngestionRejection(StatusCodes.Status400BadRequest, "Wrong number of events", $"A request carries 1 to {UsageIngestionOptions.MaxEventsPerRequest} events; this one has {events.Count}.");
        }

        return events;
    }

    /// <summary>Every event's account, before anything is recorded: one the key may not record for refuses the whole request (403).</summary>
    private async Task<Guid?[]> ResolveAccountsAsync(List<UsageIngestionItem?> items, UsageApiKeyInfo key, CancellationToken ct)
    {
        var users = new Guid?[items.Count];
        var customers = new Dictionary<string, Guid?>(StringComparer.Ordinal);
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            if (item is null || (item.AccountId is null) == (item.CustomerId is null))
            {
                continue;
            }

            Guid? user = item.AccountId;
            if (item.CustomerId is { } customer)
            {
                if (!customers.TryGetValue(customer, out user))
                {
                    user = (await _accounts.FindByCustomerAsync(customer, ct).ConfigureAwait(false))?.UserId;
                    customers[customer] = user;
                }
            }

            if (user is { } u && !key.Allows(u))
            {
                throw new IngestionRejection(StatusCodes.Status403Forbidden, "Account not allowed", $"API key {key.Prefix}… may record usage for account {key.UserId} only; event {i} is for account {u}.");
            }

            if (user is null && key.UserId is not null)
            {
                // A scoped key learns nothing about other customers: an unknown customer is not its account either.
                throw new IngestionRejection(StatusCodes.Status403Forbidden, "Account not allowed", $"API key {key.Prefix}… may record usage for account {key.UserId} only; event {i} names customer '{item.CustomerId}'.");
            }

            users[i] = user;
        }

        return users;
    }

    private async Task<List<UsageIngestionResult>> RecordAsync(List<UsageIngestionItem?> items, Guid?[] users, CancellationToken ct)
    {
        // All at once: the recorder commits them in a few group transactions.
        var tasks = new Task<UsageIngestionResult>[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            tasks[i] = RecordOneAsync(i, items[i], users[i], ct);
        }

        return [.. await Task.WhenAll(tasks).ConfigureAwait(false)];
    }

    private async Task<UsageIngestionResult> RecordOneAsync(int index, UsageIngestionItem? item, Guid? user, CancellationToken ct)
    {
        if (item is null)
        {
            return Rejected(index, "invalid_event", "The event is null.");
        }

        if ((item.AccountId is null) == (item.CustomerId is null))
        {
            return Rejected(index, "invalid_event", "Give exactly one of 'account_id' and 'customer_id'.");
        }

        if (user is not { } userId)
        {
            return Rejected(index, "unknown_account", $"No account has Stripe customer '{item.CustomerId}'.");
        }

        if (string.IsNullOrWhiteSpace(item.Meter))
        {
            return Rejected(index, "invalid_event", "'meter' is required.");
        }

        if (string.IsNullOrWhiteSpace(item.IdempotencyKey))
        {
            return Rejected(index, "invalid_idempotency_key", "'idempotency_key' is required: it makes a retried request safe.");
        }

        try
        {
            var (id, duplicate) = await _recorder.RecordReportingDuplicateAsync(userId, item.Meter, item.Quantity ?? 1, item.IdempotencyKey, item.OccurredAt, ct).ConfigureAwait(false);
            return new UsageIngestionResult(index, duplicate ? "duplicate" : "recorded", id, null, null);
        }
        catch (UsageRejectedException ex)
        {
            return Rejected(index, Code(ex), ex.Message);
        }
    }

    private static UsageIngestionResult Rejected(int index, string code, string reason) => new(index, "rejected", null, code, reason);

    private static string Code(UsageRejectedException ex) => ex switch
    {
        UsageLimitExceededException => "limit_exceeded",
        IdempotencyConflictException => "idempotency_conflict",
        UnknownMeterException => "unknown_meter",
        InvalidQuantityException => "invalid_quantity",
        UnknownUserException => "unknown_account",
        OccurredAtOutOfRangeException => "occurred_at_out_of_range",
        InvalidIdempotencyKeyException => "invalid_idempotency_key",
        _ => "rejected",
    };

    private static IngestionRejection TooLarge(int limit) =>
        new(StatusCodes.Status413PayloadTooLarge, "Payload too large", $"A usage request is at most {limit} bytes; send fewer events per request.");

    public void Dispose() => _limiter.Dispose();

    [LoggerMessage(Level = LogLevel.Error, Message = "A usage ingestion request failed; answered 503")]
    private static partial void LogFailed(ILogger logger, Exception exception);

    /// <summary>A whole-request refusal, answered as ProblemDetails with its status.</summary>
    private sealed class IngestionRejection(int status, string title, string detail) : Exception(detail)
    {
        public int Status { get; } = status;

        public string Title { get; } = title;
    }
}
