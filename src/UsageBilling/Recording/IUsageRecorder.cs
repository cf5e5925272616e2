namespace UsageBilling;

/// <summary>Records billable actions durably, before they run.</summary>
public interface IUsageRecorder
{
    /// <summary>
    /// Records usage of <paramref name="meter"/> by <paramref name="userId"/>. Returns only after the
    /// event is durably committed. With an <paramref name="idempotencyKey"/>, a repeat of the same
    /// call returns the original event id and writes nothing.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name, as configured under <c>UsageBilling:Meters</c>.</param>
    /// <param name="quantity">How many units, at least 1 and at most 15 digits. Default 1.</param>
    /// <param name="idempotencyKey">A key unique per user for this action (for example the request id), at most 255 characters.</param>
    /// <param name="occurredAt">When the action happened; default now. At most 35 days back and 5 minutes ahead.</param>
    /// <param name="cancellationToken">Stops waiting; the event may still be committed.</param>
    /// <returns>The id of the stored event.</returns>
    /// <exception cref="UsageRejectedException">The event was refused and nothing was written; the subtype and message say why
    /// (<see cref="UsageLimitExceededException"/> when it would exceed a limit of the period).</exception>
    Task<Guid> RecordAsync(
        Guid userId,
        string meter,
        long quantity = 1,
        string? idempotencyKey = null,
        DateTimeOffset? occurredAt = null,
        CancellationToken cancellationToken = default);

    /// <summary>
    /// Records usage like <see cref="RecordAsync"/>, and binds the
    /// <paramref name="idempotencyKey"/> to the request it was used for: a repeat with the same key and
    /// the same <paramref name="requestFingerprint"/> returns the original event id; the same key with
    /// another fingerprint (another request) throws <see cref="IdempotencyConflictException"/>.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="meter">The meter event name, as configured under <c>UsageBilling:Meters</c>.</param>
    /// <param name="quantity">How many units, at least 1 and at most 15 digits.</param>
    /// <param name="idempotencyKey">A key unique per user for this action, at most 255 characters.</param>
    /// <param name="requestFingerprint">A digest of the request's content (for example a SHA-256 of the message), 1 to 128 characters.</param>
    /// <param name="occurredAt">When the action happened; default now.</param>
    /// <param name="cancellationToken">Stops waiting; the event may still be committed.</param>
    /// <returns>The id of the stored event.</returns>
    /// <exception cref="UsageRejectedException">The event was refused and nothing was written; the subtype and message say why.</exception>
    Task<Guid> RecordRequestAsync(
        Guid userId,
        string meter,
        long quantity,
        string idempotencyKey,
        string requestFingerprint,
        DateTimeOffset? occurredAt = null,
        CancellationToken cancellationToken = default);
}
