namespace UsageBilling;

/// <summary>
/// Removes what no reader needs any more: events Stripe acknowledged long ago, and the hourly rollup rows of
/// days that only the daily rollup is read for. The usage page, past periods, the flusher and
/// <c>reconcile</c> give the same answers before and after.
/// </summary>
public interface IUsageRetention
{
    /// <summary>
    /// Deletes the events older than <paramref name="keep"/> that are safe to forget, in batches (each batch its
    /// own transaction): only events that were reported and acknowledged (their report <c>sent</c>, no
    /// correction pending for it) more than <paramref name="keep"/> ago, in billing periods that ended before
    /// the cutoff. Kept: pending, claimed-but-unacknowledged and dead reports' events, and the events in the
    /// two partial hours at each billing-period edge, which the period summaries read from the events. Then
    /// drops the hourly rollup rows of the days before the cutoff that hold no event any more and no
    /// billing-period edge: those days are read from the daily rollup only.
    /// </summary>
    /// <param name="keep">How much history to keep; at least <see cref="MinimumKeep"/>.</param>
    /// <param name="cancellationToken">Stops between batches (what was deleted stays deleted).</param>
    /// <returns>What was removed.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="keep"/> is shorter than <see cref="MinimumKeep"/>.</exception>
    Task<UsagePruneResult> PruneAsync(TimeSpan keep, CancellationToken cancellationToken = default);

    /// <summary>
    /// On PostgreSQL with <c>usage_events</c> partitioned by month, creates the partitions for this month and the
    /// next two (and any month back to 35 days ago that lacks one), moving in what the default partition held
    /// for them; elsewhere does nothing. The retention service runs it at start and every
    /// <see cref="RetentionOptions.Interval"/>, before pruning.
    /// </summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The names of the partitions created.</returns>
    Task<IReadOnlyList<string>> EnsurePartitionsAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Folds the hourly rollup rows of closed days (before yesterday, UTC) with few events (at most 96 of a meter) into
    /// the daily rollup: summaries read such a day's hours from its events instead, which for a sparse account are
    /// about as many rows, so the hourly rows were nearly one per event. Only days whose events are all still stored
    /// are folded; retention then keeps the events of a folded day that holds an edge of a billing period. The
    /// retention service runs it at start and every <see cref="RetentionOptions.Interval"/>, with or without
    /// <see cref="RetentionOptions.Keep"/>. Answers are the same before and after.
    /// </summary>
    /// <param name="cancellationToken">Stops between batches (what was folded stays folded).</param>
    /// <returns>What was folded.</returns>
    Task<UsageFoldResult> FoldHoursAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// The shortest <c>keep</c>: Stripe's 35-day meter-event window. Younger events may still be recorded late,
    /// sent, cancelled within 24 h of sending or compensated by a negative event.
    /// </summary>
    static TimeSpan MinimumKeep => UsageRules.MaxAge;
}

/// <summary>What one prune removed.</summary>
/// <param name="Cutoff">Events that occurred (and were acknowledged) before this instant were candidates.</param>
/// <param name="EventsDeleted">Rows deleted from <c>usage_events</c>, one by one or with their partition.</param>
/// <param name="HourlyRowsFolded">Rows deleted from <c>usage_hourly</c> whose days are read from <c>usage_daily</c>.</param>
/// <param name="Accounts">Accounts (billing customers) examined.</param>
public sealed record UsagePruneResult(DateTimeOffset Cutoff, long EventsDeleted, long HourlyRowsFolded, int Accounts)
{
    /// <summary>
    /// Monthly partitions of <c>usage_events</c> dropped whole (PostgreSQL): months that ended by the cutoff. The events
    /// they held that must stay moved to the default partition first; the dropped ones count in <see cref="EventsDeleted"/>.
    /// </summary>
    public int PartitionsDropped { get; init; }
}

/// <summary>What one fold of closed days' hours did (<see cref="IUsageRetention.FoldHoursAsync"/>).</summary>
/// <param name="DaysFolded">Daily rollup rows (one user, meter and day) marked folded.</param>
/// <param name="HourlyRowsDeleted">Their rows deleted from <c>usage_hourly</c>.</param>
public sealed record UsageFoldResult(long DaysFolded, long HourlyRowsDeleted);

/// <summary>
/// Background pruning (<c>UsageBilling:Retention</c>): off unless <see cref="Keep"/> is set. The same work as
/// <c>usagebilling db prune --keep …</c>.
/// </summary>
public sealed class RetentionOptions
{
    /// <summary>
    /// How much history to keep, for example <c>90.00:00:00</c>; <see langword="null"/> (the default) never
    /// prunes. At least 35 days (Stripe's meter-event window).
    /// </summary>
    public TimeSpan? Keep { get; set; }

    /// <summary>How often the background service prunes. Default 6 hours; between 1 minute and 7 days.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromHours(6);

    /// <summary>Rows deleted per statement (and transaction). Default 5 000; between 100 and 100 000.</summary>
    public int BatchSize { get; set; } = 5_000;
}
