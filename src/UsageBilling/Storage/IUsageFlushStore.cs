using UsageBilling.Storage;

namespace UsageBilling.Storage;

/// <summary>The persistence the flusher needs: claim, lease, mark. Implemented by the EF Core package.</summary>
public interface IUsageFlushStore
{
    /// <summary>
    /// In one transaction: takes up to <paramref name="limit"/> unclaimed events of users that have a
    /// Stripe customer (oldest first; on PostgreSQL <c>FOR UPDATE SKIP LOCKED</c>), lets
    /// <paramref name="plan"/> group them, and links the events to reports: a planned pending report
    /// joins an open report of the same customer·meter·period (one never attempted nor leased, so
    /// nothing was ever sent under its identifier), else it is written as a new report. Events of one
    /// customer·meter·period spread over many claim batches thus still make one Stripe call.
    /// </summary>
    /// <param name="limit">Most events to claim.</param>
    /// <param name="userId">Only this user's events, or all.</param>
    /// <param name="plan">Groups events into reports.</param>
    /// <param name="cancellationToken">Cancels the claim; nothing is written then.</param>
    /// <returns>What the claim did.</returns>
    Task<ClaimOutcome> ClaimAsync(int limit, Guid? userId, ReportPlanner plan, CancellationToken cancellationToken);

    /// <summary>
    /// Leases due pending reports for sending: only customer·meter keys no other live flusher holds, and
    /// all due reports of each key it takes, so at most one flusher sends for a customer·meter. Keys held
    /// by others are skipped, not waited for, so a flusher gets the due keys that are free. On PostgreSQL
    /// each key is also held by a session advisory lock on the lease's own connection until the lease is
    /// disposed: a flusher that dies (kill -9) loses its locks with its connection, and its keys are free
    /// at once instead of after <paramref name="leaseUntil"/>.
    /// </summary>
    /// <param name="now">The current time.</param>
    /// <param name="limit">Most customer·meter keys to lease.</param>
    /// <param name="stripeCustomerId">Only this customer's reports, or all.</param>
    /// <param name="owner">This flusher's name: it owns the lease, for marks and operators.</param>
    /// <param name="leaseUntil">When the lease lapses unless renewed.</param>
    /// <param name="cancellationToken">Cancels the lease.</param>
    /// <returns>The lease; dispose it to release what was not marked.</returns>
    Task<IReportLease> LeaseDueReportsAsync(DateTimeOffset now, int limit, string? stripeCustomerId, string owner, DateTimeOffset leaseUntil, CancellationToken cancellationToken);

    /// <summary>The live leases and what waits, for <c>flush</c>'s summary and <c>status</c>.</summary>
    /// <param name="now">The current time.</param>
    /// <param name="stripeCustomerId">Only this customer's reports, or all.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>Pending reports by state and the owners of live leases.</returns>
    Task<FlushLeaseSummary> GetLeasesAsync(DateTimeOffset now, string? stripeCustomerId, CancellationToken cancellationToken);

    /// <summary>
    /// How this database's recent reports of each meter were valued: evidence of sum (a report whose
    /// value exceeds its event count) or of count (a report whose value equals its event count while its
    /// events' quantities add up to more). Reads the newest reports only, through the due index.
    /// </summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The newest evidence per meter.</returns>
    Task<IReadOnlyList<MeterAggregationEvidence>> GetAggregationEvidenceAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Marks reports sent and their events reported, in one transaction that locks the rows in id order.
    /// Stripe's acknowledgement is a fact whoever holds the lease now, so this does not check the owner;
    /// it changes only pending and needs-review reports (never a dead one).
    /// </summary>
    /// <param name="reportIds">The acknowledged reports.</param>
    /// <param name="at">When Stripe acknowledged them.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>A task.</returns>
    Task MarkSentAsync(IReadOnlyCollection<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken);

    /// <summary>
    /// Marks a report in needs-review sent after an operator (or reconcile) confirmed Stripe has it,
    /// and its events acknowledged, exactly as a successful send would.
    /// </summary>
    /// <param name="reportId">The report.</param>
    /// <param name="at">When it was confirmed.</param>
    /// <param name="note">Why, kept on the report for operators.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns><see langword="true"/> when the report was in needs-review and is now sent.</returns>
    Task<bool> ConfirmSentAsync(Guid reportId, DateTimeOffset at, string note, CancellationToken cancellationToken);

    /// <summary>
    /// Resends a report in needs-review that Stripe does not have (reconcile found it missing): a report's
    /// identifier never changes, so its usage moves to a new pending report with a fresh identifier and the
    /// old one becomes dead, in one transaction.
    /// </summary>
    /// <param name="reportId">The report in needs-review.</param>
    /// <param name="now">The current time: the new report is due at once.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>The new report's id, or <see langword="null"/> when the report is no longer in needs-review (nothing changed).</returns>
    Task<Guid?> SupersedeAsync(Guid reportId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Records failed attempts: rescheduled, dead or needs-review, and releases their leases, in one
    /// transaction that locks the rows in id order. Only reports still pending and leased by
    /// <paramref name="owner"/> change: a flusher whose lease was taken over cannot reschedule (and so
    /// unlock) the new owner's report.
    /// </summary>
    /// <param name="failures">The failures.</param>
    /// <param name="owner">The lease owner that made the attempts.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>How many reports changed.</returns>
    Task<int> MarkFailedAsync(IReadOnlyCollection<ReportFailure> failures, string owner, CancellationToken cancellationToken);

    /// <summary>Marks reports dead after the fact (Stripe's asynchronous meter error reports).</summary>
    /// <param name="reportIds">The reports (meter event identifiers).</param>
    /// <param name="reason">A readable reason.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns>How many reports changed.</returns>
    Task<int> MarkDeadAsync(IReadOnlyCollection<Guid> reportIds, string reason, CancellationToken cancellationToken);

    /// <summary>
    /// Applies one Stripe meter error report in one transaction: records <paramref name="stripeEventId"/> as processed
    /// and marks each group's reports dead with the group's reason (a sent report's events stop being acknowledged).
    /// A redelivery of the event, or a delivery racing this one, changes nothing; a failure leaves neither the event
    /// recorded nor any report changed, so Stripe's next delivery applies it whole.
    /// </summary>
    /// <param name="stripeEventId">The Stripe event's id (<c>evt_…</c>).</param>
    /// <param name="stripeEventType">The event's type, kept for operators.</param>
    /// <param name="groups">The reports Stripe rejected, grouped by reason.</param>
    /// <param name="cancellationToken">Cancels the write; nothing is written then.</param>
    /// <returns>How many reports changed, or <see langword="null"/> when the event had been applied already.</returns>
    Task<int?> MarkDeadAsync(string stripeEventId, string stripeEventType, IReadOnlyList<DeadReportGroup> groups, CancellationToken cancellationToken);

    /// <summary>What is waiting: pending events, reports by status, oldest unreported usage.</summary>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The backlog.</returns>
    Task<FlushBacklog> GetBacklogAsync(CancellationToken cancellationToken);

    /// <summary>Reports in a status, newest first, for operators.</summary>
    /// <param name="status">The status.</param>
    /// <param name="limit">Most rows.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The reports.</returns>
    Task<IReadOnlyList<ReportInfo>> ListReportsAsync(UsageReportStatus status, int limit, CancellationToken cancellationToken);
}

/// <summary>A flusher's hold on leased reports; disposing it releases the reports it did not mark (they are due again at once).</summary>
public interface IReportLease : IAsyncDisposable
{
    /// <summary>The leased reports, oldest first.</summary>
    IReadOnlyList<LeasedReport> Reports { get; }

    /// <summary>Due customer·meter keys this lease skipped because another live flusher holds them.</summary>
    int KeysHeldElsewhere { get; }

    /// <summary>
    /// Extends the lease of <paramref name="outstanding"/> (leased reports whose marks are not written yet) that are
    /// still pending and owned by this lease's owner to <paramref name="until"/>. On PostgreSQL it runs on the lease's
    /// own connection, so success also proves its advisory locks are still held.
    /// </summary>
    /// <param name="outstanding">The lease's reports not yet marked sent or failed.</param>
    /// <param name="until">The new expiry.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    /// <returns><see langword="false"/> when the hold is lost: another owner took one of the outstanding reports.</returns>
    Task<bool> RenewAsync(IReadOnlyCollection<Guid> outstanding, DateTimeOffset until, CancellationToken cancellationToken);
}

/// <summary>Pending reports by state and the live leases, as <c>flush</c> and <c>status</c> show them.</summary>
/// <param name="DueReports">Pending reports due now and not leased by anyone.</param>
/// <param name="InBackoff">Pending reports waiting for a retry after a transient failure.</param>
/// <param name="NextRetryAt">The earliest retry of those, if any.</param>
/// <param name="Holders">Owners of live leases, with how many pending reports each holds and until when.</param>
public sealed record FlushLeaseSummary(long DueReports, long InBackoff, DateTimeOffset? NextRetryAt, IReadOnlyList<LeaseHolder> Holders)
{
    /// <summary>Pending reports under a live lease.</summary>
    public long Leased => Holders.Sum(h => h.Reports);
}

/// <summary>One flusher's live lease.</summary>
/// <param name="Owner">The flusher: machine, process id, process start and a random part.</param>
/// <param name="Reports">Pending reports it holds.</param>
/// <param name="ExpiresAt">When its lease lapses unless renewed (the latest of its reports).</param>
public sealed record LeaseHolder(string Owner, long Reports, DateTimeOffset ExpiresAt);

/// <summary>How a meter's reports were valued in this database, from the newest report that tells.</summary>
/// <param name="Meter">The meter event name.</param>
/// <param name="Aggregation">Sum or count.</param>
/// <param name="ReportId">The report that shows it.</param>
/// <param name="CreatedAt">When that report was claimed.</param>
public sealed record MeterAggregationEvidence(string Meter, MeterAggregation Aggregation, Guid ReportId, DateTimeOffset CreatedAt);

/// <summary>Groups claimed events into reports; the flusher's rules, applied inside the claim transaction.</summary>
/// <param name="events">The claimed events.</param>
/// <param name="items">The users' metered subscription items, by user id.</param>
/// <returns>The reports to write, each naming its events.</returns>
public delegate IReadOnlyList<NewUsageReport> ReportPlanner(IReadOnlyList<ClaimableEvent> events, ILookup<Guid, SubscriptionItemPeriod> items);

/// <summary>What one claim transaction did.</summary>
/// <param name="EventsClaimed">Events linked to a report.</param>
/// <param name="ReportsCreated">New reports written (pending and dead).</param>
/// <param name="ReportsExtended">Open reports that took more events.</param>
/// <param name="ReportsDead">New reports born dead (events too old for Stripe).</param>
public sealed record ClaimOutcome(int EventsClaimed, int ReportsCreated, int ReportsExtended, int ReportsDead);

/// <summary>Reports a Stripe meter error report names, and why Stripe rejected them.</summary>
/// <param name="ReportIds">The reports (their ids are the meter events' identifiers).</param>
/// <param name="Reason">A readable reason, with Stripe's error code.</param>
public sealed record DeadReportGroup(IReadOnlyCollection<Guid> ReportIds, string Reason);

/// <summary>An unclaimed event with its user's Stripe customer.</summary>
/// <param name="Id">The event id.</param>
/// <param name="UserId">The app's user id.</param>
/// <param name="StripeCustomerId">The user's Stripe customer.</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="Quantity">The quantity.</param>
/// <param name="OccurredAt">When it happened.</param>
public sealed record ClaimableEvent(Guid Id, Guid UserId, string StripeCustomerId, string Meter, long Quantity, DateTimeOffset OccurredAt);

/// <summary>A report to write in the claim transaction.</summary>
/// <param name="Id">The report id: meter event identifier.</param>
/// <param name="StripeCustomerId">The customer.</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="Quantity">The total.</param>
/// <param name="Timestamp">The latest event time.</param>
/// <param name="PeriodStart">The billing period start.</param>
/// <param name="PeriodEnd">The billing period end.</param>
/// <param name="Status">Pending, or dead when it must never be sent.</param>
/// <param name="LastError">Why it is dead, if it is.</param>
/// <param name="EventIds">The events it holds.</param>
public sealed record NewUsageReport(
    Guid Id,
    string StripeCustomerId,
    string Meter,
    long Quantity,
    DateTimeOffset Timestamp,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    UsageReportStatus Status,
    string? LastError,
    IReadOnlyList<Guid> EventIds);

/// <summary>A report leased for sending.</summary>
/// <param name="Id">The report id: meter event identifier.</param>
/// <param name="StripeCustomerId">The customer.</param>
/// <param name="Meter">The meter event name.</param>
/// <param name="Quantity">The total.</param>
/// <param name="Timestamp">The meter event timestamp.</param>
/// <param name="Attempts">Attempts recorded so far.</param>
/// <param name="FirstAttemptAt">When the first attempt was made (set by the lease at the latest).</param>
public sealed record LeasedReport(Guid Id, string StripeCustomerId, string Meter, long Quantity, DateTimeOffset Timestamp, int Attempts, DateTimeOffset FirstAttemptAt);

/// <summary>A failed attempt to record.</summary>
/// <param name="Id">The report.</param>
/// <param name="Status">Pending (retry), dead or needs-review.</param>
/// <param name="Attempts">The attempts count after this one.</param>
/// <param name="NextAttemptAt">When to retry (pending only).</param>
/// <param name="Error">What happened.</param>
public sealed record ReportFailure(Guid Id, UsageReportStatus Status, int Attempts, DateTimeOffset NextAttemptAt, string Error);

/// <summary>The flush backlog.</summary>
/// <param name="PendingEvents">Events not yet claimed into a report.</param>
/// <param name="PendingEventsWithoutCustomer">Of those, events whose user has no Stripe customer yet.</param>
/// <param name="OldestUnreportedAt">Creation time of the oldest event Stripe has not acknowledged and that can still be sent.</param>
/// <param name="ReportsByStatus">Report counts by status.</param>
/// <param name="LastSentAt">When Stripe last acknowledged a report.</param>
public sealed record FlushBacklog(long PendingEvents, long PendingEventsWithoutCustomer, DateTimeOffset? OldestUnreportedAt, IReadOnlyDictionary<UsageReportStatus, long> ReportsByStatus, DateTimeOffset? LastSentAt);

/// <summary>A report as operators see it.</summary>
/// <param name="Id">The report id (meter event identifier).</param>
/// <param name="StripeCustomerId">The customer.</param>
/// <param name="Meter">The meter.</param>
/// <param name="Quantity">The total.</param>
/// <param name="EventCount">Events in it.</param>
/// <param name="Timestamp">The meter event timestamp.</param>
/// <param name="PeriodStart">The period start.</param>
/// <param name="PeriodEnd">The period end.</param>
/// <param name="Status">The status.</param>
/// <param name="Attempts">Attempts so far.</param>
/// <param name="FirstAttemptAt">First attempt.</param>
/// <param name="LastError">Last error.</param>
/// <param name="CreatedAt">When claimed.</param>
/// <param name="SentAt">When acknowledged.</param>
public sealed record ReportInfo(
    Guid Id,
    string StripeCustomerId,
    string Meter,
    long Quantity,
    int EventCount,
    DateTimeOffset Timestamp,
    DateTimeOffset PeriodStart,
    DateTimeOffset PeriodEnd,
    UsageReportStatus Status,
    int Attempts,
    DateTimeOffset? FirstAttemptAt,
    string? LastError,
    DateTimeOffset CreatedAt,
    DateTimeOffset? SentAt);
