namespace UsageBilling;

/// <summary>Reports buffered usage to Stripe Meters exactly once: claim → send → mark.</summary>
public interface IUsageFlusher
{
    /// <summary>
    /// One flush cycle: claims due events into reports (in batches), sends every due report and
    /// marks the acknowledged ones. Safe to run from several processes at once.
    /// </summary>
    /// <param name="cancellationToken">Stops the cycle; nothing is lost, unsent reports stay due.</param>
    /// <returns>What the cycle did.</returns>
    Task<FlushResult> FlushOnceAsync(CancellationToken cancellationToken = default);

    /// <summary>One flush cycle, reporting the running totals after every claim batch and every send round.</summary>
    /// <param name="progress">Receives the cumulative result so far.</param>
    /// <param name="cancellationToken">Stops the cycle; nothing is lost, unsent reports stay due.</param>
    /// <returns>What the cycle did.</returns>
    Task<FlushResult> FlushOnceAsync(IProgress<FlushResult> progress, CancellationToken cancellationToken = default);

    /// <summary>Flushes one user's usage at once (the invoice-boundary path: <c>invoice.created</c>).</summary>
    /// <param name="userId">The app's user id.</param>
    /// <param name="cancellationToken">Stops the flush.</param>
    /// <returns>What the flush did.</returns>
    Task<FlushResult> FlushCustomerAsync(Guid userId, CancellationToken cancellationToken = default);
}

/// <summary>What one flush did.</summary>
/// <param name="EventsClaimed">Events newly grouped into reports.</param>
/// <param name="ReportsCreated">Reports newly created by the claim.</param>
/// <param name="ReportsSent">Reports Stripe acknowledged in this flush.</param>
/// <param name="ReportsRetried">Reports that failed transiently and were rescheduled.</param>
/// <param name="ReportsDead">Reports that ended dead in this flush.</param>
/// <param name="ReportsNeedingReview">Reports moved to needs-review in this flush.</param>
/// <param name="ConfigurationError">Set when Stripe refused our credentials (401/403): the cycle stopped.</param>
public sealed record FlushResult(
    int EventsClaimed,
    int ReportsCreated,
    int ReportsSent,
    int ReportsRetried,
    int ReportsDead,
    int ReportsNeedingReview,
    string? ConfigurationError = null)
{
    /// <summary>An empty result.</summary>
    public static FlushResult Empty { get; } = new(0, 0, 0, 0, 0, 0);

    /// <summary>Adds two results.</summary>
    /// <param name="other">The other result.</param>
    /// <returns>The sum.</returns>
    public FlushResult Add(FlushResult other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return new(
            EventsClaimed + other.EventsClaimed,
            ReportsCreated + other.ReportsCreated,
            ReportsSent + other.ReportsSent,
            ReportsRetried + other.ReportsRetried,
            ReportsDead + other.ReportsDead,
            ReportsNeedingReview + other.ReportsNeedingReview,
            ConfigurationError ?? other.ConfigurationError);
    }
}
