namespace UsageBilling.Storage;

/// <summary>The persistence of corrections: voids in one transaction, and the cancels the flusher owes Stripe. Implemented by the EF Core package.</summary>
public interface IUsageCorrectionStore
{
    /// <summary>
    /// Voids an event in one transaction (the rules are on <see cref="IUsageCorrections.VoidAsync"/>): deletes it,
    /// takes it out of its report when that was never sent, out of the rollups and the period total, writes the
    /// audit row and, as the case may be, the owed cancel or the compensating report.
    /// </summary>
    /// <param name="request">What to void and the rules' inputs.</param>
    /// <param name="cancellationToken">Cancels the write; nothing is written then.</param>
    /// <returns>The correction.</returns>
    /// <exception cref="UsageCorrectionRefusedException">Refused; nothing was written.</exception>
    Task<UsageCorrectionInfo> VoidEventAsync(VoidEventRequest request, CancellationToken cancellationToken);

    /// <summary>The audit, newest first.</summary>
    /// <param name="userId">One account, or all.</param>
    /// <param name="limit">Most rows.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The corrections.</returns>
    Task<IReadOnlyList<UsageCorrectionInfo>> ListAsync(Guid? userId, int limit, CancellationToken cancellationToken);

    /// <summary>Leases due owed cancels no live lease holds.</summary>
    /// <param name="now">The current time.</param>
    /// <param name="limit">Most corrections.</param>
    /// <param name="userId">Only this account's corrections, or all.</param>
    /// <param name="owner">The flusher.</param>
    /// <param name="leaseUntil">When the lease lapses.</param>
    /// <param name="cancellationToken">Cancels the lease.</param>
    /// <returns>The leased corrections.</returns>
    Task<IReadOnlyList<DueCorrection>> LeaseDueAsync(DateTimeOffset now, int limit, Guid? userId, string owner, DateTimeOffset leaseUntil, CancellationToken cancellationToken);

    /// <summary>
    /// Stripe cancelled the correction's report: in one transaction the correction is done, the report (if still
    /// sent) becomes canceled, and its remaining events move to a new pending report with a fresh identifier.
    /// </summary>
    /// <param name="correctionId">The correction.</param>
    /// <param name="countMeter">Whether the meter counts events (the resend's value is then its event count).</param>
    /// <param name="now">The current time.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns><see langword="true"/> when the correction was pending and is now done.</returns>
    Task<bool> CompleteAsync(Guid correctionId, bool countMeter, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Stripe refused the cancel for good (its 24 h passed while the cancel waited): in one transaction the correction
    /// becomes a compensation, a negative report of the voided quantity in the old report's period and timestamp.
    /// Only while pending and leased by <paramref name="owner"/>, and only when that timestamp is at or after
    /// <paramref name="compensableSince"/>; otherwise nothing changes.
    /// </summary>
    /// <param name="correctionId">The correction.</param>
    /// <param name="owner">The lease owner.</param>
    /// <param name="now">The current time.</param>
    /// <param name="compensableSince">The oldest timestamp Stripe still accepts, less a margin.</param>
    /// <param name="error">Stripe's refusal, kept on the correction.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns><see langword="true"/> when the correction is now a compensation.</returns>
    Task<bool> CompensateAsync(Guid correctionId, string owner, DateTimeOffset now, DateTimeOffset compensableSince, string error, CancellationToken cancellationToken);

    /// <summary>Records a failed cancel: rescheduled, or failed for good; releases the lease. Only while pending and leased by <paramref name="owner"/>.</summary>
    /// <param name="correctionId">The correction.</param>
    /// <param name="owner">The lease owner.</param>
    /// <param name="permanent">Stripe refused for good.</param>
    /// <param name="nextAttemptAt">When to retry (transient only).</param>
    /// <param name="error">What happened.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    Task MarkFailedAsync(Guid correctionId, string owner, bool permanent, DateTimeOffset nextAttemptAt, string error, CancellationToken cancellationToken);
}

/// <summary>A void to make.</summary>
/// <param name="CorrectionId">The new correction's id.</param>
/// <param name="EventId">The event.</param>
/// <param name="Actor">Who asks.</param>
/// <param name="Reason">Why.</param>
/// <param name="Now">The current time.</param>
/// <param name="CancelableSince">A sent report first attempted at or after this may still be cancelled on Stripe.</param>
/// <param name="CompensableSince">A compensating event's timestamp must be at or after this (Stripe's 35 days, less a margin).</param>
/// <param name="CountMeters">Meters that count events (their reports carry event counts; they cannot be compensated).</param>
public sealed record VoidEventRequest(
    Guid CorrectionId,
    Guid EventId,
    string Actor,
    string Reason,
    DateTimeOffset Now,
    DateTimeOffset CancelableSince,
    DateTimeOffset CompensableSince,
    IReadOnlySet<string> CountMeters);

/// <summary>An owed cancel, leased for sending.</summary>
/// <param name="Id">The correction.</param>
/// <param name="ReportId">The report to cancel (its id is the meter event identifier).</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="Attempts">Attempts so far.</param>
public sealed record DueCorrection(Guid Id, Guid ReportId, string Meter, int Attempts);
