using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Flushing;
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

        // Pending groups join an open report of their key when one exists (nothing was sent under its identifier yet).
        var keys = planned.Where(r => r.Status == UsageReportStatus.Pending).Select(r => (r.StripeCustomerId, r.Meter, r.PeriodStart)).ToHashSet();
        var open = keys.Count == 0 ? [] : await dialect.LockOpenReportsAsync(connection, dbTransaction, keys, cancellationToken).ConfigureAwait(false);
        var created = new List<NewUsageReport>();
        var extended = new List<(Guid, long, int, DateTimeOffset)>();
        var links = new List<(Guid, Guid)>(events.Count);
        foreach (var report in planned)
        {
            var target = report.Id;
            if (report.Status == UsageReportStatus.Pending && open.TryGetValue((report.StripeCustomerId, report.Meter, report.PeriodStart), out var openId))
            {
                target = openId;
                extended.Add((openId, report.Quantity, report.EventIds.Count, report.Timestamp));
            }
            else
            {
                created.Add(report);
            }

            links.AddRange(report.EventIds.Select(e => (e, target)));
        }

        var now = time.GetUtcNow();
        context.Set<UsageReport>().AddRange(created.Select(r => new UsageReport
        {
            Id = r.Id,
            StripeCustomerId = r.StripeCustomerId,
            Meter = r.Meter,
            Quantity = r.Quantity,
            EventCount = r.EventIds.Count,
            Timestamp = r.Timestamp,
            PeriodStart = r.PeriodStart,
            PeriodEnd = r.PeriodEnd,
            Status = r.Status,
            NextAttemptAt = now,
            LastError = r.LastError,
            CreatedAt = now,
        }));
        await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        if (extended.Count > 0)
        {
            await dialect.ExtendReportsAsync(connection, dbTransaction, extended, cancellationToken).ConfigureAwait(false);
        }

        await dialect.AssignReportsAsync(connection, dbTransaction, links, cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return new ClaimOutcome(events.Count, created.Count, extended.Count, created.Count(r => r.Status == UsageReportStatus.Dead));
    }

    public async Task<IReadOnlyList<LeasedReport>> LeaseDueReportsAsync(DateTimeOffset now, int limit, string? stripeCustomerId, string owner, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var leased = await dialect.LeaseAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), now, limit, stripeCustomerId, owner, leaseUntil, cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return leased;
    }

    public async Task MarkSentAsync(IReadOnlyCollection<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var chunk in reportIds.Chunk(500))
        {
            var ids = chunk.ToList();
            await context.Set<UsageReport>()
                .Where(r => ids.Contains(r.Id) && r.Status != UsageReportStatus.Sent)
                .ExecuteUpdateAsync(
                    s => s.SetProperty(r => r.Status, UsageReportStatus.Sent)
                        .SetProperty(r => r.SentAt, at)
                        .SetProperty(r => r.Attempts, r => r.Attempts + 1)
                        .SetProperty(r => r.LastError, (string?)null)
                        .SetProperty(r => r.LeaseOwner, (string?)null)
                        .SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null),
                    cancellationToken).ConfigureAwait(false);
            await MarkEventsReportedAsync(context, transaction.GetDbTransaction(), ids, at, cancellationToken).ConfigureAwait(false);
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
            await MarkEventsReportedAsync(context, transaction.GetDbTransaction(), [reportId], at, cancellationToken).ConfigureAwait(false);
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return changed == 1;
    }

    /// <summary>
    /// Stamps the reports' events acknowledged and adds them to the rollups' acknowledged
    /// columns, in the caller's transaction, after the caller changed the reports' status (whose row
    /// locks keep two flushers from counting the same events twice).
    /// </summary>
    private async Task MarkEventsReportedAsync(TContext context, System.Data.Common.DbTransaction transaction, List<Guid> reportIds, DateTimeOffset at, CancellationToken cancellationToken)
    {
        var deltas = await dialect.AcknowledgedHourlyAsync(context.Database.GetDbConnection(), transaction, reportIds, at, cancellationToken).ConfigureAwait(false);
        deltas.Sort(UsageRollup.LockOrder);
        await usageDialect.UpsertRollupsAsync(context.Database.GetDbConnection(), transaction, deltas, UsageRollup.ToDaily(deltas), cancellationToken).ConfigureAwait(false);
        var reportIdsNullable = reportIds.Select(i => (Guid?)i).ToList();
        await context.Set<UsageEvent>()
            .Where(e => reportIdsNullable.Contains(e.ReportId) && e.ReportedAt == null)
            .ExecuteUpdateAsync(s => s.SetProperty(e => e.ReportedAt, at), cancellationToken).ConfigureAwait(false);
    }

    public async Task MarkFailedAsync(IReadOnlyCollection<ReportFailure> failures, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        foreach (var failure in failures)
        {
            var error = failure.Error.Length > 2000 ? failure.Error[..2000] : failure.Error;
            await context.Set<UsageReport>()
                .Where(r => r.Id == failure.Id && r.Status == UsageReportStatus.Pending)
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
    }

    public async Task<int> MarkDeadAsync(IReadOnlyCollection<Guid> reportIds, string reason, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        var error = reason.Length > 2000 ? reason[..2000] : reason;
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var ids = reportIds.ToList();
        return await context.Set<UsageReport>()
            .Where(r => ids.Contains(r.Id) && r.Status != UsageReportStatus.Dead)
            .ExecuteUpdateAsync(
                s => s.SetProperty(r => r.Status, UsageReportStatus.Dead)
                    .SetProperty(r => r.LastError, error)
                    .SetProperty(r => r.LeaseOwner, (string?)null)
                    .SetProperty(r => r.LeaseExpiresAt, (DateTimeOffset?)null),
                cancellationToken).ConfigureAwait(false);
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
