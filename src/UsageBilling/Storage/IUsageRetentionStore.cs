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
}
