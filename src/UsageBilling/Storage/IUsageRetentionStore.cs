namespace UsageBilling.Storage;

/// <summary>Deletes what retention may forget (<see cref="IUsageRetention"/>), in batches.</summary>
public interface IUsageRetentionStore
{
    /// <summary>
    /// Deletes the events that occurred and were acknowledged before <paramref name="cutoff"/> whose report is
    /// <c>sent</c> with no pending correction and whose billing period ended by <paramref name="cutoff"/>,
    /// except those in the partial hours at their period's edges; then the hourly rollup rows of the days
    /// before <paramref name="cutoff"/>'s day that hold no event and no edge of a reported period.
    /// At most <paramref name="batchSize"/> rows per statement, each statement its own transaction.
    /// </summary>
    /// <param name="cutoff">Nothing at or after this instant is touched. Callers keep it at least 35 days in the past.</param>
    /// <param name="batchSize">Rows per statement.</param>
    /// <param name="cancellationToken">Stops between batches.</param>
    /// <returns>What was removed.</returns>
    Task<UsagePruneResult> PruneAsync(DateTimeOffset cutoff, int batchSize, CancellationToken cancellationToken);

    /// <summary>
    /// Where <c>usage_events</c> is partitioned by month (PostgreSQL), creates the partitions missing from the month
    /// 35 days before <paramref name="now"/> to two months after it, moving into each the rows the default partition
    /// held for its month; elsewhere does nothing. Concurrent callers serialize.
    /// </summary>
    /// <param name="now">The current instant.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The partitions created.</returns>
    Task<IReadOnlyList<string>> EnsurePartitionsAsync(DateTimeOffset now, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<string>>([]);

    /// <summary>
    /// Folds the hours of closed days (before yesterday, UTC) with few events of a meter into their daily rollup row:
    /// marks the row folded and deletes the day's hourly rows; summaries then read such a day's hours from its events,
    /// which retention keeps while the day holds an edge of a reported billing period. Only days whose events are all
    /// still stored are folded. Stores without hourly rollups do nothing.
    /// </summary>
    /// <param name="now">The current instant.</param>
    /// <param name="since">Only days from this one on are examined; <see langword="null"/> examines all. A day older than
    /// the recorder's 35-day window that could not be folded once (dense, or some of its events pruned) never can be.</param>
    /// <param name="batchSize">Daily rows examined per statement.</param>
    /// <param name="cancellationToken">Stops between batches (what was folded stays folded).</param>
    /// <returns>What was folded.</returns>
    Task<UsageFoldResult> FoldHoursAsync(DateTimeOffset now, DateTimeOffset? since, int batchSize, CancellationToken cancellationToken) =>
        Task.FromResult(new UsageFoldResult(0, 0));
}
