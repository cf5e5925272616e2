namespace UsageBilling.Storage;

/// <summary>
/// The persistence port of UsageBilling. The EF Core package implements it for SQLite and
/// PostgreSQL; the core library holds the rules and calls only this.
/// </summary>
public interface IUsageStore
{
    /// <summary>How many insert batches this store commits well in parallel (1 for a single-writer database).</summary>
    int DefaultConcurrentBatches { get; }

    /// <summary>
    /// Inserts events in one transaction and returns one outcome per event, in order. Events whose
    /// (user, idempotency key) already exists are not inserted; their outcome carries the stored row.
    /// Events of unknown users fail alone. With spend control on (<c>UsageBilling:Limits:Enforce</c>) the
    /// same transaction checks every event against its account·meter·period total and writes what
    /// crossed an alert threshold; refused events leave nothing and get <see cref="StoredEventStatus.Rejected"/>.
    /// Throws only when the whole batch failed.
    /// </summary>
    /// <param name="events">Validated events; at most one per (user, idempotency key).</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>One outcome per input event, same order.</returns>
    Task<IReadOnlyList<StoredEventOutcome>> InsertEventsAsync(IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken);

    /// <summary>Reads the user's Stripe customer, plan and subscription item periods.</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The state, or <see langword="null"/> when the user has no billing customer yet.</returns>
    Task<BillingState?> GetBillingStateAsync(Guid userId, CancellationToken cancellationToken);

    /// <summary>
    /// The user's usage over [<paramref name="from"/>, <paramref name="to"/>) per meter and UTC day,
    /// unreported events included. Implementations must not scan every event of the range: summaries
    /// call this on every page view, for customers with millions of events.
    /// </summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="from">Inclusive start.</param>
    /// <param name="to">Exclusive end.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>One row per meter and day with usage in the range, in no particular order.</returns>
    Task<IReadOnlyList<MeterDayUsage>> GetUsageByDayAsync(Guid userId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken);
}

/// <summary>A validated usage event ready to insert.</summary>
/// <param name="Id">Time-ordered (v7) id chosen by the recorder.</param>
/// <param name="UserId">The app's user id.</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="Quantity">The quantity, at least 1.</param>
/// <param name="OccurredAt">When the billable action happened (UTC, microsecond precision).</param>
/// <param name="IdempotencyKey">The caller's key, unique per user, or <see langword="null"/>.</param>
/// <param name="CreatedAt">When the recorder accepted the event.</param>
/// <param name="RequestFingerprint">A digest of the request the key was used for (bound to the key), or <see langword="null"/>.</param>
public sealed record NewUsageEvent(Guid Id, Guid UserId, string Meter, long Quantity, DateTimeOffset OccurredAt, string? IdempotencyKey, DateTimeOffset CreatedAt, string? RequestFingerprint = null);

/// <summary>What happened to one event of an insert batch.</summary>
public enum StoredEventStatus
{
    /// <summary>The row was inserted.</summary>
    Inserted,

    /// <summary>A row with the same user and idempotency key already existed; nothing was written.</summary>
    Existing,

    /// <summary>The user does not exist; nothing was written for this event.</summary>
    UnknownUser,

    /// <summary>This event alone failed; see <see cref="StoredEventOutcome.Error"/>.</summary>
    Failed,

    /// <summary>A limit refused the event and nothing was written; <see cref="StoredEventOutcome.Error"/> is the <c>UsageLimitExceededException</c>.</summary>
    Rejected,
}

/// <summary>The outcome of one event of an insert batch.</summary>
/// <param name="Status">What happened.</param>
/// <param name="ExistingId">For <see cref="StoredEventStatus.Existing"/>: the stored row's id.</param>
/// <param name="ExistingMeter">For <see cref="StoredEventStatus.Existing"/>: the stored row's meter.</param>
/// <param name="ExistingQuantity">For <see cref="StoredEventStatus.Existing"/>: the stored row's quantity.</param>
/// <param name="ExistingOccurredAt">For <see cref="StoredEventStatus.Existing"/>: the stored row's time.</param>
/// <param name="Error">For <see cref="StoredEventStatus.Failed"/> and <see cref="StoredEventStatus.Rejected"/>: the cause.</param>
/// <param name="ExistingFingerprint">For <see cref="StoredEventStatus.Existing"/>: the stored row's request fingerprint.</param>
public readonly record struct StoredEventOutcome(
    StoredEventStatus Status,
    Guid ExistingId = default,
    string? ExistingMeter = null,
    long ExistingQuantity = 0,
    DateTimeOffset ExistingOccurredAt = default,
    Exception? Error = null,
    string? ExistingFingerprint = null)
{
    /// <summary>The outcome of an inserted row.</summary>
    public static StoredEventOutcome Inserted { get; } = new(StoredEventStatus.Inserted);

    /// <summary>The outcome of a row whose user does not exist.</summary>
    public static StoredEventOutcome UnknownUser { get; } = new(StoredEventStatus.UnknownUser);
}

/// <summary>A user's billing state as the app last learned it from Stripe.</summary>
/// <param name="UserId">The app's user id.</param>
/// <param name="StripeCustomerId">The Stripe customer (<c>cus_…</c>).</param>
/// <param name="PlanId">The configured plan the user is on, if any.</param>
/// <param name="Items">The metered subscription items with their current periods.</param>
public sealed record BillingState(Guid UserId, string StripeCustomerId, string? PlanId, IReadOnlyList<SubscriptionItemPeriod> Items);

/// <summary>A subscription item's current billing period, as Stripe last reported it.</summary>
/// <param name="ItemId">The Stripe subscription item id (<c>si_…</c>).</param>
/// <param name="Meter">The meter event name of the item's metered price; <see langword="null"/> for the flat item.</param>
/// <param name="PeriodStart">Inclusive start of the current period.</param>
/// <param name="PeriodEnd">Exclusive end of the current period.</param>
public sealed record SubscriptionItemPeriod(string ItemId, string? Meter, DateTimeOffset PeriodStart, DateTimeOffset PeriodEnd);

/// <summary>A user's usage of one meter on one UTC day (within the range asked for).</summary>
/// <param name="Meter">The meter event name.</param>
/// <param name="Day">The UTC day.</param>
/// <param name="Total">Sum of quantities.</param>
/// <param name="Count">Number of events.</param>
/// <param name="PendingTotal">Sum of quantities Stripe has not acknowledged yet.</param>
/// <param name="PendingCount">Number of events Stripe has not acknowledged yet.</param>
/// <param name="LastReportedAt">When Stripe last acknowledged an event of this day, if ever.</param>
public sealed record MeterDayUsage(string Meter, DateOnly Day, long Total, long Count, long PendingTotal, long PendingCount, DateTimeOffset? LastReportedAt);

/// <summary>Usage of one meter on one UTC day.</summary>
/// <param name="Day">The UTC day.</param>
/// <param name="Total">Sum of quantities that day.</param>
/// <param name="Count">Number of events that day.</param>
public sealed record DailyUsage(DateOnly Day, long Total, long Count);
