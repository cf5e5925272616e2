using UsageBilling.Storage;
using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>The provider-specific SQL of the flusher's claim and lease.</summary>
internal interface IFlushSqlDialect
{
    /// <summary>Unclaimed events of users with a Stripe customer, oldest first, locked for this transaction where the database can.</summary>
    Task<List<ClaimableEvent>> SelectClaimableAsync(DbConnection connection, DbTransaction transaction, int limit, Guid? userId, CancellationToken cancellationToken);

    /// <summary>
    /// Adds each key's growth to its open report (pending, never attempted, not leased; the oldest when a key has
    /// several), locking the key's open reports for this transaction first where the database can (in id order, as
    /// every multi-row change of reports does; a report leased while this waited is no longer open and is left alone).
    /// Returns the report each key joined; keys without an open report are absent. Each key appears once in
    /// <paramref name="growth"/>.
    /// </summary>
    Task<Dictionary<(string Customer, string Meter, DateTimeOffset PeriodStart), Guid>> ExtendOpenReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<ReportGrowth> growth, CancellationToken cancellationToken);

    /// <summary>Inserts new reports in the context's current transaction.</summary>
    Task InsertReportsAsync(DbContext context, IReadOnlyList<UsageReport> reports, CancellationToken cancellationToken);

    /// <summary>Links events to their reports.</summary>
    Task AssignReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid EventId, DateTimeOffset OccurredAt, Guid ReportId)> links, CancellationToken cancellationToken);

    /// <summary>
    /// <see langword="true"/> when the lease holds session locks on its own connection (PostgreSQL): the
    /// store then keeps that connection open for the lease's life and runs lease, renewal and release on it,
    /// outside any transaction of its own. Otherwise each runs in its own (IMMEDIATE) transaction.
    /// </summary>
    bool HoldsSessionLocks { get; }

    /// <summary>Serializes claims (PostgreSQL: a transaction advisory lock), so a claim that takes fewer events than asked saw the whole backlog and every open report.</summary>
    Task BeginClaimAsync(DbConnection connection, DbTransaction transaction, CancellationToken cancellationToken);

    /// <summary>
    /// Leases due reports of customer·meter keys no live flusher holds, up to <paramref name="limit"/> keys,
    /// skipping held keys rather than waiting; returns the leased reports and how many due keys were held elsewhere.
    /// </summary>
    Task<(List<LeasedReport> Reports, int HeldElsewhere)> LeaseAsync(DbConnection connection, DbTransaction? transaction, DateTimeOffset now, int limit, string? customerId, string owner, DateTimeOffset until, CancellationToken cancellationToken);

    /// <summary>Row-locks the reports in id order for the caller's transaction (PostgreSQL), so multi-row updates of reports never deadlock; a no-op where the database has one writer.</summary>
    Task LockReportsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyCollection<Guid> reportIds, CancellationToken cancellationToken);

    /// <summary>Lets go of the lease's session locks (PostgreSQL); a no-op elsewhere.</summary>
    Task ReleaseSessionLocksAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>
    /// What marking these reports sent adds to the rollups: their events summed per user, UTC hour and meter, as
    /// reported deltas stamped <paramref name="at"/>. The caller calls it only for reports it just moved to
    /// <c>sent</c> (or, negated, for a sent report whose events it moves to a resend).
    /// </summary>
    Task<List<RollupDelta>> AcknowledgedHourlyAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken);

    /// <summary>Locks one event row (PostgreSQL <c>FOR UPDATE</c>; SQLite's transaction already holds the writer lock) and reads its report; <c>Found</c> is false when it does not exist.</summary>
    Task<(bool Found, Guid? ReportId)> LockEventAsync(DbConnection connection, DbTransaction transaction, Guid eventId, CancellationToken cancellationToken);
}

/// <summary>What one claim adds to the open report of a customer·meter·period: quantity, events and their latest timestamp.</summary>
internal readonly record struct ReportGrowth(string Customer, string Meter, DateTimeOffset PeriodStart, long Quantity, int Events, DateTimeOffset Timestamp);
