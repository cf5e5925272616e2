namespace UsageBilling;

/// <summary>
/// Corrects usage recorded wrongly: voids an event so it leaves the account's totals, rollups and limits, and
/// makes Stripe agree. Every correction is audited (who, why, what) in <c>usage_corrections</c>.
/// </summary>
public interface IUsageCorrections
{
    /// <summary>
    /// Voids one usage event, in one transaction:
    /// <list type="bullet">
    /// <item>not yet sent to Stripe (unclaimed, in a report never attempted, or in a dead report): it is removed
    /// from the buffer, its report, the rollups and the period total (<see cref="UsageCorrectionKind.Removed"/>);</item>
    /// <item>in a report Stripe acknowledged within the last 23 hours (Stripe cancels events it received in the last
    /// 24): the flusher cancels that report with a meter event adjustment and resends the report's other events
    /// under a new identifier (<see cref="UsageCorrectionKind.CancelAndResend"/>);</item>
    /// <item>older, on a sum meter: a compensating negative meter event in the same period
    /// (<see cref="UsageCorrectionKind.Compensated"/>; Stripe bills a negative period total as 0);</item>
    /// <item>older, on a count meter, or while its report is being sent or needs review: refused with
    /// <see cref="UsageCorrectionRefusedException"/> and nothing changes.</item>
    /// </list>
    /// The Stripe calls are durable rows the flusher sends exactly once, like reports.
    /// </summary>
    /// <param name="eventId">The usage event.</param>
    /// <param name="actor">Who asks (an operator's name or e-mail, a service); kept in the audit.</param>
    /// <param name="reason">Why; kept in the audit.</param>
    /// <param name="cancellationToken">Cancels the correction; nothing is written then.</param>
    /// <returns>The correction as audited.</returns>
    /// <exception cref="UsageCorrectionRefusedException">The event cannot be voided (see its <see cref="UsageCorrectionRefusedException.Refusal"/>).</exception>
    Task<UsageCorrectionInfo> VoidAsync(Guid eventId, string actor, string reason, CancellationToken cancellationToken = default);

    /// <summary>The audit of corrections, newest first.</summary>
    /// <param name="userId">One account's corrections, or every account's.</param>
    /// <param name="limit">Most rows (1–1000).</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The corrections.</returns>
    Task<IReadOnlyList<UsageCorrectionInfo>> ListAsync(Guid? userId = null, int limit = 100, CancellationToken cancellationToken = default);
}

/// <summary>How a voided event's usage was corrected.</summary>
public enum UsageCorrectionKind
{
    /// <summary>Stripe never had it: removed locally, nothing to send.</summary>
    Removed,

    /// <summary>Its report is cancelled on Stripe (meter event adjustment) and the report's other events are resent under a new identifier.</summary>
    CancelAndResend,

    /// <summary>A negative meter event of its quantity in the same period offsets it on Stripe.</summary>
    Compensated,
}

/// <summary>Where a correction stands.</summary>
public enum UsageCorrectionStatus
{
    /// <summary>Complete locally; a compensating event is sent by the flusher like any report.</summary>
    Done,

    /// <summary>The cancel of the event's report is owed to Stripe; the flusher sends it.</summary>
    Pending,

    /// <summary>Stripe refused the cancel for good; see <see cref="UsageCorrectionInfo.LastError"/>.</summary>
    Failed,
}

/// <summary>One audited correction.</summary>
/// <param name="Id">The correction id.</param>
/// <param name="EventId">The voided event.</param>
/// <param name="UserId">Its account.</param>
/// <param name="Meter">Its meter.</param>
/// <param name="Quantity">Its quantity.</param>
/// <param name="OccurredAt">When it happened.</param>
/// <param name="Kind">How it was corrected.</param>
/// <param name="Status">Where the correction stands.</param>
/// <param name="ReportId">The report the event was in, if any.</param>
/// <param name="CorrectionReportId">The report carrying the correction to Stripe (resend or negative event), once there is one.</param>
/// <param name="Actor">Who asked.</param>
/// <param name="Reason">Why.</param>
/// <param name="CreatedAt">When it was asked for.</param>
/// <param name="CompletedAt">When it was complete.</param>
/// <param name="LastError">The last Stripe error of its call, if any.</param>
public sealed record UsageCorrectionInfo(
    Guid Id,
    Guid EventId,
    Guid UserId,
    string Meter,
    long Quantity,
    DateTimeOffset OccurredAt,
    UsageCorrectionKind Kind,
    UsageCorrectionStatus Status,
    Guid? ReportId,
    Guid? CorrectionReportId,
    string Actor,
    string Reason,
    DateTimeOffset CreatedAt,
    DateTimeOffset? CompletedAt,
    string? LastError);

/// <summary>Why a void was refused.</summary>
public enum UsageCorrectionRefusal
{
    /// <summary>No usage event with that id (never recorded, or already voided).</summary>
    EventNotFound,

    /// <summary>Its report is being sent (attempted, leased or in backoff): try again once the flusher has an answer.</summary>
    ReportInFlight,

    /// <summary>Its report needs review (Stripe's answer is unknown): resolve it with <c>reconcile</c> first.</summary>
    ReportNeedsReview,

    /// <summary>Stripe received it more than 23 hours ago and the meter counts events: a negative event cannot undo a count.</summary>
    CountMeterTooLate,

    /// <summary>Its period's timestamp is older than Stripe accepts (35 days): Stripe's usage can no longer change.</summary>
    TooOldForStripe,

    /// <summary>The actor or reason is missing or too long.</summary>
    InvalidRequest,
}

/// <summary>A void that cannot be made; nothing was written.</summary>
public sealed class UsageCorrectionRefusedException : UsageBillingException
{
    /// <summary>Creates the exception.</summary>
    public UsageCorrectionRefusedException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public UsageCorrectionRefusedException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and its cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public UsageCorrectionRefusedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>Creates the exception for one event.</summary>
    /// <param name="refusal">Why.</param>
    /// <param name="eventId">The event.</param>
    /// <param name="message">The message.</param>
    public UsageCorrectionRefusedException(UsageCorrectionRefusal refusal, Guid eventId, string message)
        : base(message)
    {
        Refusal = refusal;
        EventId = eventId;
    }

    /// <summary>Why the void was refused.</summary>
    public UsageCorrectionRefusal Refusal { get; }

    /// <summary>The event.</summary>
    public Guid EventId { get; }
}
