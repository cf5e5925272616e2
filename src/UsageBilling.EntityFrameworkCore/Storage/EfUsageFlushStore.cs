using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary><see cref="IUsageFlushStore"/> over any DbContext that applied the UsageBilling model.</summary>
/// <typeparam name="TContext">The app's context.</typeparam>
internal sealed class EfUsageFlushStore<TContext>(IDbContextFactory<TContext> contexts, IFlushSqlDialect dialect, IUsageSqlDialect usageDialect, TimeProvider time) : IUsageFlushStore
    where TContext : DbContext
{
    public async Task<ClaimOutcome> ClaimAsync(int limit, Guid? userId, ReportPlanner plan, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var connection = context.Database.GetDbConnection();
        var dbTransaction = transaction.GetDbTransaction();
        await dialect.BeginClaimAsync(connection, dbTransaction, cancellationToken).ConfigureAwait(false);
        var events = await dialect.SelectClaimableAsync(connection, dbTransaction, limit, userId, cancellationToken).ConfigureAwait(false);
        if (events.Count == 0)
        {
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return new ClaimOutcome(0, 0, 0, 0);
        }

        var users = events.Select(e => e.UserId).Distinct().ToList();
        var items = await context.Set<BillingSubscriptionItem>().AsNoTracking()
            .Where(i => users.Contains(i.UserId) && i.Meter != null)
            .Select(i => new { i.UserId, Period = new SubscriptionItemPeriod(i.Id, i.Meter, i.CurrentPeriodStart, i.CurrentPeriodEnd) })
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        var planned = plan(events, items.ToLookup(i => i.UserId, i => i.Period));

        // Pending groups join the open report of their key when one exists (nothing was sent under its identifier yet):
        // the dialect locks those reports (in id order) and adds each key's groups to its report; the other groups become
        // new reports, inserted in one statement where the database allows it.
        var growth = planned.Where(r => r.Status == UsageReportStatus.Pending)
            .GroupBy(r => (r.StripeCustomerId, r.Meter, r.PeriodStart))
            .Select(g => new ReportGrowth(g.Key.StripeCustomerId, g.Key.Meter, g.Key.PeriodStart, g.Sum(r => r.Quantity), g.Sum(r => r.EventIds.Count), g.Max(r => r.Timestamp)))
            .ToList();
        var open = growth.Count == 0 ? [] : await dialect.ExtendOpenReportsAsync(connection, dbTransaction, growth, cancellationToken).ConfigureAwait(false);
        var now = time.GetUtcNow();
        var created = new List<UsageReport>();
        var dead = 0;
        var occurred = events.ToDictionary(e => e.Id, e => e.OccurredAt);
        var links = new List<(Guid, DateTimeOffset, Guid)>(events.Count);
        foreach (var report in planned)
        {
            var target = report.Id;
            if (report.Status == UsageReportStatus.Pending && open.TryGetValue((report.StripeCustomerId, report.Meter, report.PeriodStart), out var openId))
            {
                target = openId;
            }
            else
            {
                dead += report.Status == UsageReportStatus.Dead ? 1 : 0;
                created.Add(new UsageReport
                {
                    Id = report.Id,
                    StripeCustomerId = report.StripeCustomerId,
                    Meter = report.Meter,
                    Quantity = report.Quantity,
                    EventCount = report.EventIds.Count,
                    Timestamp = report.Timestamp,
                    PeriodStart = report.PeriodStart,
                    PeriodEnd = report.PeriodEnd,
                    Status = report.Status,
                    NextAttemptAt = now,
                    LastError = report.LastError,
                    CreatedAt = now,
                });
            }

            links.AddRange(report.EventIds.Select(e => (e, occurred[e], target)));
        }

        if (created.Count > 0)
        {
            await dialect.InsertReportsAsync(context, created, cancellationToken).ConfigureAwait(false);
        }

        await dialect.AssignReportsAsync(connection, dbTransaction, links, cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return new ClaimOutcome(events.Count, created.Count, open.Count, dead);
    }

    public async Task<IReportLease> LeaseDueReportsAsync(DateTimeOffset now, int limit, string? stripeCustomerId, string owner, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            List<LeasedReport> reports;
            int held;
            if (dialect.HoldsSessionLocks)
            {
                // The lease's own connection, open until the lease is disposed: its session holds the key locks.
                await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
                    (reports, held) = await dialect.LeaseAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), now, limit, stripeCustomerId, owner, leaseUntil, cancellationToken).ConfigureAwait(false);
                    await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch
                {
                    await dialect.ReleaseSessionLocksAsync(context.Database.GetDbConnection(), CancellationToken.None).ConfigureAwait(false);
                    throw;
                }

                if (reports.Count == 0)
                {
                    await dialect.ReleaseSessionLocksAsync(context.Database.GetDbConnection(), cancellationToken).ConfigureAwait(false);
                }
            }
            else
            {
                await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
                (reports, held) = await dialect.LeaseAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), now, limit, stripeCustomerId, owner, leaseUntil, cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            }

            if (!dialect.HoldsSessionLocks || reports.Count == 0)
            {
                await context.DisposeAsync().ConfigureAwait(false);
                return new ReportLease(this, null, reports, held, owner);
            }

            return new ReportLease(this, context, reports, held, owner);
        }
        catch
        {
            await context.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Extends the lease of the owner's still-pending reports among <paramref name="ids"/>; false when another owner holds one.</summary>
    private async Task<bool> RenewAsync(TContext? session, List<Guid> ids, string owner, DateTimeOffset until, CancellationToken cancellationToken)
    {
        var context = session ?? await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            var lost = false;
            foreach (var chunk in ids.Chunk(1000))
            {
                var part = chunk.ToList();
                await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), part, cancellationToken).ConfigureAwait(false);
                lost |= await context.Set<UsageReport>()
                    .AnyAsync(r => part.Contains(r.Id) && r.Status == UsageReportStatus.Pending && r.LeaseOwner != null && r.LeaseOwner != owner, cancellationToken).ConfigureAwait(false);
                await context.Set<UsageReport>()
                    .Where(r => part.Contains(r.Id) && r.Status == UsageReportStatus.Pending && r.LeaseOwner == owner)
                    .ExecuteUpdateAsync(s => s.SetProperty(r => r.LeaseExpiresAt, until), cancellationToken).ConfigureAwait(false);
            }

            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return !lost;
        }
        finally
        {
            if (session is null)
            {
                await context.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Clears the owner's lease on its still-pending reports among the lease's reports (due again at once) and lets go of session locks.</summary>
    private async Task ReleaseAsync(TContext? session, IReadOnlyList<LeasedReport> reports, string owner)
    {
        var context = session ?? await contexts.CreateDbContextAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            await using (var transaction = await context.Database.BeginTransactionAsync(CancellationToken.None).ConfigureAwait(false))
            {
                foreach (var chunk in reports.Select(r => r.Id).Chunk(1000))
                {
                    var part = chunk.ToList();
                    await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), part, CancellationToken.None).ConfigureAwait(false);
                    await context.Set<UsageReport>()
                        .Where(r => part.Contains(r.Id) && r.Status == UsageReportStatus.Pending && r.LeaseOwner == owner)
                        .ExecuteUpdateAsync(s => s.SetProperty(r => r.LeaseOwner, (string?)null).SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null), CancellationToken.None).ConfigureAwait(false);
                }

                await transaction.CommitAsync(CancellationToken.None).ConfigureAwait(false);
            }

            if (session is not null)
            {
                await dialect.ReleaseSessionLocksAsync(context.Database.GetDbConnection(), CancellationToken.None).ConfigureAwait(false);
            }
        }
        finally
        {
            await context.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A lease: on PostgreSQL it owns the context whose open connection holds the key locks.</summary>
    private sealed class ReportLease(EfUsageFlushStore<TContext> store, TContext? session, IReadOnlyList<LeasedReport> reports, int heldElsewhere, string owner) : IReportLease
    {
        private readonly SemaphoreSlim _gate = new(1, 1);
        private bool _disposed;

        public IReadOnlyList<LeasedReport> Reports => reports;

        public int KeysHeldElsewhere => heldElsewhere;

        public async Task<bool> RenewAsync(IReadOnlyCollection<Guid> outstanding, DateTimeOffset until, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(outstanding);
            await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return outstanding.Count == 0 || await store.RenewAsync(session, [.. outstanding.Order()], owner, until, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                _gate.Release();
            }
        }

        public async ValueTask DisposeAsync()
        {
            await _gate.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_disposed)
                {
                    return;
                }

                _disposed = true;
                if (reports.Count > 0)
                {
                    await store.ReleaseAsync(session, reports, owner).ConfigureAwait(false);
                }
                else if (session is not null)
                {
                    await session.DisposeAsync().ConfigureAwait(false);
                }
            }
            finally
            {
                _gate.Release();
            }
        }
    }

    public async Task MarkSentAsync(IReadOnlyCollection<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var chunk in reportIds.Order().Chunk(500))
        {
            var candidates = chunk.ToList();
            await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), candidates, cancellationToken).ConfigureAwait(false);

            // Only what this transaction changes gets its events acknowledged (a dead report stays dead, a sent one counts once).
            var ids = await context.Set<UsageReport>()
                .Where(r => candidates.Contains(r.Id) && (r.Status == UsageReportStatus.Pending || r.Status == UsageReportStatus.NeedsReview))
                .Select(r => r.Id).ToListAsync(cancellationToken).ConfigureAwait(false);
            if (ids.Count == 0)
            {
                continue;
            }

            await context.Set<UsageReport>()
                .Where(r => ids.Contains(r.Id))
                .ExecuteUpdateAsync(
                    s => s.SetProperty(r => r.Status, UsageReportStatus.Sent)
                        .SetProperty(r => r.SentAt, at)
                        .SetProperty(r => r.Attempts, r => r.Attempts + 1)
                        .SetProperty(r => r.LastError, (string?)null)
                        .SetProperty(r => r.LeaseOwner, (string?)null)
                        .SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null),
                    cancellationToken).ConfigureAwait(false);
            await AcknowledgeInRollupsAsync(context, transaction.GetDbTransaction(), ids, at, withdraw: false, cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    public async Task<bool> ConfirmSentAsync(Guid reportId, DateTimeOffset at, string note, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(note);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var changed = await context.Set<UsageReport>()
            .Where(r => r.Id == reportId && r.Status == UsageReportStatus.NeedsReview)
            .ExecuteUpdateAsync(
                s => s.SetProperty(r => r.Status, UsageReportStatus.Sent)
                    .SetProperty(r => r.SentAt, at)
                    .SetProperty(r => r.LastError, note.Length > 2000 ? note[..2000] : note),
                cancellationToken).ConfigureAwait(false);
        if (changed == 1)
        {
            await AcknowledgeInRollupsAsync(context, transaction.GetDbTransaction(), [reportId], at, withdraw: false, cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return changed == 1;
    }

    public async Task<Guid?> SupersedeAsync(Guid reportId, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var replacementId = Guid.CreateVersion7(now);

        // The status condition is the guard: a report that left needs-review meanwhile is not touched.
        var changed = await context.Set<UsageReport>()
            .Where(r => r.Id == reportId && r.Status == UsageReportStatus.NeedsReview)
            .ExecuteUpdateAsync(
                s => s.SetProperty(r => r.Status, UsageReportStatus.Dead)
                    .SetProperty(r => r.LastError, $"superseded by {replacementId} after reconcile")
                    .SetProperty(r => r.LeaseOwner, (string?)null)
                    .SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null),
                cancellationToken).ConfigureAwait(false);
        if (changed == 0)
        {
            return null;
        }

        var old = await context.Set<UsageReport>().AsNoTracking().SingleAsync(r => r.Id == reportId, cancellationToken).ConfigureAwait(false);
        context.Set<UsageReport>().Add(new UsageReport
        {
            Id = replacementId,
            StripeCustomerId = old.StripeCustomerId,
            Meter = old.Meter,
            Quantity = old.Quantity,
            EventCount = old.EventCount,
            Timestamp = old.Timestamp,
            PeriodStart = old.PeriodStart,
            PeriodEnd = old.PeriodEnd,
            Status = UsageReportStatus.Pending,
            NextAttemptAt = now,
            LastError = $"resend of {old.Id} after reconcile: Stripe did not have it",
            CreatedAt = now,
        });
        await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        var oldId = (Guid?)reportId;
        await context.Set<UsageEvent>().Where(e => e.ReportId == oldId)
            .ExecuteUpdateAsync(s => s.SetProperty(e => e.ReportId, replacementId), cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return replacementId;
    }

    /// <summary>
    /// Adds the reports' events to the rollups' acknowledged columns (or, <paramref name="withdraw"/>, takes them out),
    /// in the caller's transaction, right after the caller moved the reports into <c>sent</c> (or out of it). The
    /// reports' row locks keep two flushers from counting the same events twice: only a report this transaction
    /// changed gets here. The events themselves are not written: an event is acknowledged when its report is <c>sent</c>.
    /// </summary>
    private async Task AcknowledgeInRollupsAsync(TContext context, System.Data.Common.DbTransaction transaction, List<Guid> reportIds, DateTimeOffset at, bool withdraw, CancellationToken cancellationToken)
    {
        var deltas = await dialect.AcknowledgedHourlyAsync(context.Database.GetDbConnection(), transaction, reportIds, at, cancellationToken).ConfigureAwait(false);
        if (withdraw)
        {
            deltas = UsageRollup.Withdrawn(deltas);
        }
        else
        {
            deltas.Sort(UsageRollup.LockOrder);
        }

        await usageDialect.UpsertRollupsAsync(context.Database.GetDbConnection(), transaction, deltas, UsageRollup.ToDaily(deltas), cancellationToken).ConfigureAwait(false);
    }

    public async Task<int> MarkFailedAsync(IReadOnlyCollection<ReportFailure> failures, string owner, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var ordered = failures.OrderBy(f => f.Id).ToList();
        await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), [.. ordered.Select(f => f.Id)], cancellationToken).ConfigureAwait(false);
        var changed = 0;
        foreach (var failure in ordered)
        {
            var error = failure.Error.Length > 2000 ? failure.Error[..2000] : failure.Error;
            changed += await context.Set<UsageReport>()
                .Where(r => r.Id == failure.Id && r.Status == UsageReportStatus.Pending && r.LeaseOwner == owner)
                .ExecuteUpdateAsync(
                    s => s.SetProperty(r => r.Status, failure.Status)
                        .SetProperty(r => r.Attempts, failure.Attempts)
                        .SetProperty(r => r.NextAttemptAt, failure.NextAttemptAt)
                        .SetProperty(r => r.LastError, error)
                        .SetProperty(r => r.LeaseOwner, (string?)null)
                        .SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null),
                    cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return changed;
    }

    public async Task<int> MarkDeadAsync(IReadOnlyCollection<Guid> reportIds, string reason, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(reportIds);
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var changed = await MarkDeadInTransactionAsync(context, transaction.GetDbTransaction(), [new DeadReportGroup(reportIds, reason)], cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return changed;
    }

    public async Task<int?> MarkDeadAsync(string stripeEventId, string stripeEventType, IReadOnlyList<DeadReportGroup> groups, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(stripeEventId);
        ArgumentException.ThrowIfNullOrWhiteSpace(stripeEventType);
        ArgumentNullException.ThrowIfNull(groups);
        foreach (var group in groups)
        {
            ArgumentNullException.ThrowIfNull(group.ReportIds, nameof(groups));
            ArgumentException.ThrowIfNullOrWhiteSpace(group.Reason, nameof(groups));
        }

        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);

        // The event's row first: a concurrent delivery of the same event waits on its key here and then finds it taken,
        // so exactly one delivery applies the errors, and the event counts as applied only with them.
        context.Set<ProcessedWebhookEvent>().Add(new ProcessedWebhookEvent { Id = stripeEventId, Type = stripeEventType, ProcessedAt = time.GetUtcNow() });
        try
        {
            await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DbUpdateException)
        {
            await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            if (await IsProcessedAsync(stripeEventId, cancellationToken).ConfigureAwait(false))
            {
                return null;
            }

            throw;
        }

        var changed = await MarkDeadInTransactionAsync(context, transaction.GetDbTransaction(), groups, cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return changed;
    }

    /// <summary>Whether the event's row is there (read on a connection of its own: the caller's transaction failed).</summary>
    private async Task<bool> IsProcessedAsync(string stripeEventId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<ProcessedWebhookEvent>().AsNoTracking().AnyAsync(e => e.Id == stripeEventId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Marks each group's reports dead with its reason (a report in several groups takes the first), in the caller's transaction.</summary>
    private async Task<int> MarkDeadInTransactionAsync(TContext context, System.Data.Common.DbTransaction transaction, IReadOnlyList<DeadReportGroup> groups, CancellationToken cancellationToken)
    {
        // Every report of every group locked first, in id order (as every multi-row change of reports locks them).
        var all = groups.SelectMany(g => g.ReportIds).Distinct().Order().ToList();
        if (all.Count == 0)
        {
            return 0;
        }

        await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction, all, cancellationToken).ConfigureAwait(false);
        var changed = 0;
        foreach (var group in groups)
        {
            var error = group.Reason.Length > 2000 ? group.Reason[..2000] : group.Reason;
            var ids = group.ReportIds.Distinct().ToList();

            // A sent report Stripe later rejected (a thin meter error): its events stop being acknowledged, so they leave the
            // rollups' acknowledged columns in the same transaction.
            var wasSent = await context.Set<UsageReport>().Where(r => ids.Contains(r.Id) && r.Status == UsageReportStatus.Sent)
                .Select(r => r.Id).ToListAsync(cancellationToken).ConfigureAwait(false);
            changed += await context.Set<UsageReport>()
                .Where(r => ids.Contains(r.Id) && r.Status != UsageReportStatus.Dead)
                .ExecuteUpdateAsync(
                    s => s.SetProperty(r => r.Status, UsageReportStatus.Dead)
                        .SetProperty(r => r.LastError, error)
                        .SetProperty(r => r.LeaseOwner, (string?)null)
                        .SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null),
                    cancellationToken).ConfigureAwait(false);
            if (wasSent.Count > 0)
            {
                await AcknowledgeInRollupsAsync(context, transaction, wasSent, time.GetUtcNow(), withdraw: true, cancellationToken).ConfigureAwait(false);
            }
        }

        return changed;
    }

    public async Task<FlushLeaseSummary> GetLeasesAsync(DateTimeOffset now, string? stripeCustomerId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var pending = context.Set<UsageReport>().AsNoTracking().Where(r => r.Status == UsageReportStatus.Pending);
        if (stripeCustomerId is not null)
        {
            pending = pending.Where(r => r.StripeCustomerId == stripeCustomerId);
        }

        var live = await pending.Where(r => r.LeaseExpiresAt != null && r.LeaseExpiresAt > now && r.LeaseOwner != null)
            .Select(r => new { r.LeaseOwner, r.LeaseExpiresAt }).ToListAsync(cancellationToken).ConfigureAwait(false);
        var free = pending.Where(r => r.LeaseExpiresAt == null || r.LeaseExpiresAt <= now);
        var due = await free.LongCountAsync(r => r.NextAttemptAt <= now, cancellationToken).ConfigureAwait(false);
        var backoff = free.Where(r => r.NextAttemptAt > now);
        var inBackoff = await backoff.LongCountAsync(cancellationToken).ConfigureAwait(false);
        var nextRetry = inBackoff == 0 ? null : await backoff.OrderBy(r => r.NextAttemptAt).Select(r => (DateTimeOffset?)r.NextAttemptAt).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        var holders = live.GroupBy(l => l.LeaseOwner!)
            .Select(g => new LeaseHolder(g.Key, g.LongCount(), g.Max(l => l.LeaseExpiresAt!.Value)))
            .OrderByDescending(h => h.Reports).ThenBy(h => h.Owner, StringComparer.Ordinal)
            .ToList();
        return new FlushLeaseSummary(due, inBackoff, nextRetry, holders);
    }

    public async Task<IReadOnlyList<MeterAggregationEvidence>> GetAggregationEvidenceAsync(CancellationToken cancellationToken)
    {
        // The newest reports only, read through the (status, next_attempt_at) index: this runs at every flusher start.
        const int sample = 500;
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var reports = context.Set<UsageReport>().AsNoTracking();
        var newest = new List<(Guid Id, string Meter, long Quantity, int EventCount, DateTimeOffset CreatedAt)>();
        foreach (var status in new[] { UsageReportStatus.Pending, UsageReportStatus.Sent })
        {
            var rows = await reports.Where(r => r.Status == status).OrderByDescending(r => r.NextAttemptAt).Take(sample)
                .Select(r => new { r.Id, r.Meter, r.Quantity, r.EventCount, r.CreatedAt }).ToListAsync(cancellationToken).ConfigureAwait(false);
            newest.AddRange(rows.Select(r => (r.Id, r.Meter, r.Quantity, r.EventCount, r.CreatedAt)));
        }

        // A value above the event count can only be a sum; a value equal to it is a count when the events add up to more.
        var evidence = newest.Where(r => r.Quantity > r.EventCount)
            .Select(r => new MeterAggregationEvidence(r.Meter, UsageBilling.MeterAggregation.Sum, r.Id, r.CreatedAt)).ToList();
        var equal = newest.Where(r => r.Quantity == r.EventCount).Select(r => (Guid?)r.Id).ToList();
        if (equal.Count > 0)
        {
            var sums = await context.Set<UsageEvent>().AsNoTracking().Where(e => equal.Contains(e.ReportId))
                .GroupBy(e => e.ReportId).Select(g => new { Id = g.Key!.Value, Quantity = g.Sum(e => e.Quantity) })
                .ToListAsync(cancellationToken).ConfigureAwait(false);
            var byId = newest.ToDictionary(r => r.Id);
            evidence.AddRange(sums.Where(x => byId.TryGetValue(x.Id, out var r) && x.Quantity > r.EventCount)
                .Select(x => new MeterAggregationEvidence(byId[x.Id].Meter, UsageBilling.MeterAggregation.Count, x.Id, byId[x.Id].CreatedAt)));
        }

        return [.. evidence.GroupBy(e => e.Meter, StringComparer.Ordinal).Select(g => g.OrderByDescending(e => e.CreatedAt).ThenByDescending(e => e.ReportId).First())];
    }

    public async Task<FlushBacklog> GetBacklogAsync(CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var unclaimed = context.Set<UsageEvent>().AsNoTracking().Where(e => e.ReportId == null);
        var customers = context.Set<BillingCustomer>().AsNoTracking();
        var pending = await unclaimed.LongCountAsync(cancellationToken).ConfigureAwait(false);
        var withoutCustomer = await unclaimed.Where(e => !customers.Any(c => c.UserId == e.UserId)).LongCountAsync(cancellationToken).ConfigureAwait(false);
        var oldestEvent = await unclaimed.Where(e => customers.Any(c => c.UserId == e.UserId))
            .OrderBy(e => e.CreatedAt).Select(e => (DateTimeOffset?)e.CreatedAt).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        var reports = context.Set<UsageReport>().AsNoTracking();
        var oldestReport = await reports.Where(r => r.Status == UsageReportStatus.Pending)
            .OrderBy(r => r.CreatedAt).Select(r => (DateTimeOffset?)r.CreatedAt).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        var byStatus = await reports.GroupBy(r => r.Status).Select(g => new { g.Key, Count = g.LongCount() }).ToListAsync(cancellationToken).ConfigureAwait(false);
        var lastSent = await reports.Where(r => r.SentAt != null).OrderByDescending(r => r.SentAt).Select(r => r.SentAt).FirstOrDefaultAsync(cancellationToken).ConfigureAwait(false);
        DateTimeOffset? oldest = oldestEvent is null ? oldestReport : oldestReport is null ? oldestEvent : (oldestEvent < oldestReport ? oldestEvent : oldestReport);
        return new FlushBacklog(pending, withoutCustomer, oldest, byStatus.ToDictionary(x => x.Key, x => x.Count), lastSent);
    }

    public async Task<IReadOnlyList<ReportInfo>> ListReportsAsync(UsageReportStatus status, int limit, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        return await context.Set<UsageReport>().AsNoTracking()
            .Where(r => r.Status == status)
            .OrderByDescending(r => r.CreatedAt)
            .Take(limit)
            .Select(r => new ReportInfo(r.Id, r.StripeCustomerId, r.Meter, r.Quantity, r.EventCount, r.Timestamp, r.PeriodStart, r.PeriodEnd, r.Status, r.Attempts, r.FirstAttemptAt, r.LastError, r.CreatedAt, r.SentAt))
            .ToListAsync(cancellationToken).ConfigureAwait(false);
    }
}
