using System.Diagnostics.Metrics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>
/// Group commit: concurrent callers' events are queued and written by a few writer loops, each
/// taking whatever is queued (up to <see cref="RecordingOptions.MaxBatchSize"/>) into one
/// multi-row insert and one transaction. Each caller is released only when its own transaction
/// has committed; a failed batch fails exactly its callers; a bad row fails only its caller.
/// </summary>
internal sealed partial class GroupCommitUsageRecorder : IUsageRecorder, IAsyncDisposable
{
    private readonly IUsageStore _store;
    private readonly UsageBillingOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<GroupCommitUsageRecorder> _logger;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = false });
    private readonly Lazy<Task[]> _writers;
    private readonly Histogram<int> _batchSizes;

    public GroupCommitUsageRecorder(IUsageStore store, IOptions<UsageBillingOptions> options, TimeProvider time, ILogger<GroupCommitUsageRecorder> logger, UsageBillingMetrics metrics)
    {
        _store = store;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _batchSizes = metrics.RecordBatchSize;
        var writers = _options.Recording.MaxConcurrentBatches ?? store.DefaultConcurrentBatches;
        _writers = new Lazy<Task[]>(() => [.. Enumerable.Range(0, Math.Max(1, writers)).Select(_ => Task.Run(WriteLoopAsync))]);
    }

    public async Task<Guid> RecordAsync(Guid userId, string meter, long quantity = 1, string? idempotencyKey = null, DateTimeOffset? occurredAt = null, CancellationToken cancellationToken = default) =>
        (await RecordCoreAsync(userId, meter, quantity, idempotencyKey, null, occurredAt, cancellationToken).ConfigureAwait(false)).Id;

    /// <summary>Records like <see cref="RecordAsync"/> and tells whether the key's event already existed (the ingestion API answers <c>duplicate</c>).</summary>
    internal Task<(Guid Id, bool Duplicate)> RecordReportingDuplicateAsync(Guid userId, string meter, long quantity, string? idempotencyKey, DateTimeOffset? occurredAt, CancellationToken cancellationToken) =>
        RecordCoreAsync(userId, meter, quantity, idempotencyKey, null, occurredAt, cancellationToken);

    public async Task<Guid> RecordRequestAsync(Guid userId, string meter, long quantity, string idempotencyKey, string requestFingerprint, DateTimeOffset? occurredAt = null, CancellationToken cancellationToken = default)
    {
        if (idempotencyKey is null)
        {
            throw new InvalidIdempotencyKeyException("A request fingerprint binds an idempotency key; pass the key too.");
        }

        if (string.IsNullOrWhiteSpace(requestFingerprint) || requestFingerprint.Length > UsageRules.MaxFingerprintLength)
        {
            throw new InvalidIdempotencyKeyException($"The request fingerprint must be 1 to {UsageRules.MaxFingerprintLength} non-blank characters; it had {requestFingerprint?.Length ?? 0}.");
        }

        return (await RecordCoreAsync(userId, meter, quantity, idempotencyKey, requestFingerprint, occurredAt, cancellationToken).ConfigureAwait(false)).Id;
    }

    private async Task<(Guid Id, bool Duplicate)> RecordCoreAsync(Guid userId, string meter, long quantity, string? idempotencyKey, string? fingerprint, DateTimeOffset? occurredAt, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var now = UsageRules.Normalize(_time.GetUtcNow());
        var evt = Validate(userId, meter, quantity, idempotencyKey, occurredAt, now) with { RequestFingerprint = fingerprint };
        var pending = new Pending(evt, occurredAt is not null);
        _ = _writers.Value;
        if (!_queue.Writer.TryWrite(pending))
        {
            throw new ObjectDisposedException(nameof(GroupCommitUsageRecorder), "The usage recorder is shutting down; the event was not recorded.");
        }

        var id = await pending.Completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        return (id, id != evt.Id);
    }

    private NewUsageEvent Validate(Guid userId, string meter, long quantity, string? idempotencyKey, DateTimeOffset? occurredAt, DateTimeOffset now)
    {
        if (userId == Guid.Empty)
        {
            throw new UnknownUserException("userId is empty; pass the id of an existing user.");
        }

        if (string.IsNullOrEmpty(meter) || !_options.Meters.ContainsKey(meter))
        {
            throw new UnknownMeterException($"Unknown meter '{meter}'. Configured meters: {string.Join(", ", _options.Meters.Keys.Order(StringComparer.Ordinal))}.");
        }

        if (quantity < 1)
        {
            throw new InvalidQuantityException($"Quantity must be at least 1, was {quantity}. Record corrections as adjustments, not negative usage.");
        }

        if (quantity > UsageRules.MaxQuantity)
        {
            throw new InvalidQuantityException($"Quantity {quantity} has more than 15 significant digits, which Stripe rejects; the most is {UsageRules.MaxQuantity}.");
        }

        if (idempotencyKey is not null && (idempotencyKey.Length == 0 || idempotencyKey.Length > UsageRules.MaxIdempotencyKeyLength || string.IsNullOrWhiteSpace(idempotencyKey)))
        {
            throw new InvalidIdempotencyKeyException($"The idempotency key must be 1 to {UsageRules.MaxIdempotencyKeyLength} non-blank characters; it had {idempotencyKey.Length}.");
        }

        var at = occurredAt is { } given ? UsageRules.Normalize(given) : now;
        if (at > now + UsageRules.MaxAhead)
        {
            throw new OccurredAtOutOfRangeException($"occurredAt {at:O} is more than 5 minutes ahead of now ({now:O}); Stripe rejects such events.");
        }

        if (at < now - UsageRules.MaxAge)
        {
            throw new OccurredAtOutOfRangeException($"occurredAt {at:O} is more than 35 days before now ({now:O}); Stripe can no longer bill it.");
        }

        return new NewUsageEvent(Guid.CreateVersion7(now), userId, meter, quantity, at, idempotencyKey, now);
    }

    private async Task WriteLoopAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<Pending>(_options.Recording.MaxBatchSize);
        while (await reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < _options.Recording.MaxBatchSize && reader.TryRead(out var item))
            {
                batch.Add(item);
            }

            if (batch.Count > 0)
            {
                await WriteBatchAsync(batch).ConfigureAwait(false);
            }
        }
    }

    private async Task WriteBatchAsync(List<Pending> batch)
    {
        // One row per (user, key): later duplicates in the same batch follow the first one.
        var representatives = new List<Pending>(batch.Count);
        var followers = new List<(Pending Follower, int Leader)>();
        Dictionary<(Guid, string), int>? byKey = null;
        foreach (var item in batch)
        {
            if (item.Event.IdempotencyKey is { } key)
            {
                byKey ??= [];
                if (byKey.TryGetValue((item.Event.UserId, key), out var leaderIndex))
                {
                    followers.Add((item, leaderIndex));
                    continue;
                }

                byKey[(item.Event.UserId, key)] = representatives.Count;
            }

            representatives.Add(item);
        }

        _batchSizes.Record(representatives.Count);
        IReadOnlyList<StoredEventOutcome> outcomes;
        try
        {
            outcomes = await _store.InsertEventsAsync([.. representatives.Select(p => p.Event)], CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            LogBatchFailed(ex, batch.Count);
            foreach (var item in batch)
            {
                item.Completion.TrySetException(ex);
            }

            return;
        }

        for (var i = 0; i < representatives.Count; i++)
        {
            Complete(representatives[i], outcomes[i]);
        }

        foreach (var (follower, leader) in followers)
        {
            var leaderOutcome = outcomes[leader];
            var leaderEvent = representatives[leader].Event;
            var reference = leaderOutcome.Status == StoredEventStatus.Inserted
                ? new StoredEventOutcome(StoredEventStatus.Existing, leaderEvent.Id, leaderEvent.Meter, leaderEvent.Quantity, leaderEvent.OccurredAt, ExistingFingerprint: leaderEvent.RequestFingerprint)
                : leaderOutcome;
            Complete(follower, reference);
        }
    }

    private static void Complete(Pending item, StoredEventOutcome outcome)
    {
        var evt = item.Event;
        switch (outcome.Status)
        {
            case StoredEventStatus.Inserted:
                item.Completion.TrySetResult(evt.Id);
                break;
            case StoredEventStatus.Existing:
                var same = outcome.ExistingMeter == evt.Meter
                    && outcome.ExistingQuantity == evt.Quantity
                    && (!item.OccurredAtGiven || outcome.ExistingOccurredAt == evt.OccurredAt);
                var sameRequest = outcome.ExistingFingerprint == evt.RequestFingerprint;
                if (same && sameRequest)
                {
                    item.Completion.TrySetResult(outcome.ExistingId);
                }
                else if (same)
                {
                    item.Completion.TrySetException(new IdempotencyConflictException(
                        $"Idempotency key '{evt.IdempotencyKey}' was already used by this user for another request (event {outcome.ExistingId}); a repeat must send the same content. Use a new key for a new action."));
                }
                else
                {
                    item.Completion.TrySetException(new IdempotencyConflictException(
                        $"Idempotency key '{evt.IdempotencyKey}' was already used by this user for {outcome.ExistingQuantity} × '{outcome.ExistingMeter}' at {outcome.ExistingOccurredAt:O} (event {outcome.ExistingId}); this call asked for {evt.Quantity} × '{evt.Meter}'. Use a new key for a new action."));
                }

                break;
            case StoredEventStatus.UnknownUser:
                item.Completion.TrySetException(new UnknownUserException($"User {evt.UserId} does not exist; usage can only be recorded for existing users."));
                break;
            default:
                item.Completion.TrySetException(outcome.Error ?? new UsageBillingException("The event could not be stored."));
                break;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        if (_writers.IsValueCreated)
        {
            await Task.WhenAll(_writers.Value).ConfigureAwait(false);
        }
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Error, Message = "A usage batch of {Count} events failed; its callers get the error")]
    private partial void LogBatchFailed(Exception exception, int count);

    private sealed class Pending(NewUsageEvent evt, bool occurredAtGiven)
    {
        public NewUsageEvent Event { get; } = evt;

        public bool OccurredAtGiven { get; } = occurredAtGiven;

        public TaskCompletionSource<Guid> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
