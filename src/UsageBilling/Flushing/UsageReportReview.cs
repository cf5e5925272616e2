using UsageBilling.Storage;

namespace UsageBilling;

/// <summary>What an operator page shows: the usage reports that need a person (dead, or needs review).</summary>
public interface IUsageReportReview
{
    /// <summary>
    /// Reports Stripe refused for good (<see cref="UsageReportStatus.Dead"/>) and reports attempted long ago
    /// without an answer (<see cref="UsageReportStatus.NeedsReview"/>: resending blindly could bill twice), newest first.
    /// </summary>
    /// <param name="limit">Most reports of each status.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The reports.</returns>
    Task<IReadOnlyList<ReportInfo>> ListNeedingAttentionAsync(int limit = 200, CancellationToken cancellationToken = default);
}

/// <summary>Reads them through the flush store.</summary>
/// <param name="store">The flush store.</param>
internal sealed class UsageReportReview(IUsageFlushStore store) : IUsageReportReview
{
    public async Task<IReadOnlyList<ReportInfo>> ListNeedingAttentionAsync(int limit = 200, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        var dead = await store.ListReportsAsync(UsageReportStatus.Dead, limit, cancellationToken).ConfigureAwait(false);
        var review = await store.ListReportsAsync(UsageReportStatus.NeedsReview, limit, cancellationToken).ConfigureAwait(false);
        return [.. dead.Concat(review).OrderByDescending(r => r.CreatedAt)];
    }
}
