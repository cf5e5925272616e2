using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary><see cref="IUsageCorrectionStore"/> over any DbContext that applied the UsageBilling model.</summary>
/// <typeparam name="TContext">The app's context.</typeparam>
internal sealed class EfUsageCorrectionStore<TContext>(IDbContextFactory<TContext> contexts, IFlushSqlDialect dialect, IUsageSqlDialect usageDialect) : IUsageCorrectionStore
    where TContext : DbContext
{
    private const string Removed = "removed";
    private const string CancelAndResend = "cancel_and_resend";
    private const string Compensated = "compensated";
    private const string Done = "done";
    private const string Pending = "pending";
    private const string Failed = "failed";

    public async Task<UsageCorrectionInfo> VoidEventAsync(VoidEventRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);

        // The event's report can change under us (a claim links it, a cancel's completion moves it): lock the report
        // first, then the event (the order marks use), and start again if the event moved meanwhile.
        for (var attempt = 0; ; attempt++)
        {
            await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
            await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            var connection = context.Database.GetDbConnection();
            var tx = transaction.GetDbTransaction();
            var seen = await context.Set<UsageEvent>().AsNoTracking().Where(e => e.Id == request.EventId)
                .Select(e => new { e.ReportId }).SingleOrDefaultAsync(cancellationToken).ConfigureAwait(false)
                ?? throw NotFound(request.EventId);
            if (seen.ReportId is { } seenReport)
            {
                await dialect.LockReportsAsync(connection, tx, [seenReport], cancellationToken).ConfigureAwait(false);
            }

            var (found, reportId) = await dialect.LockEventAsync(connection, tx, request.EventId, cancellationToken).ConfigureAwait(false);
            if (!found)
            {
                throw NotFound(request.EventId);
            }

            if (reportId != seen.ReportId)
            {
                if (attempt < 5)
                {
                    continue;
                }

                throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.ReportInFlight, request.EventId, $"Usage event {request.EventId} keeps moving between reports; try again.");
            }

            var info = await VoidLockedAsync(context, tx, request, reportId, cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return info;
        }
    }

    private async Task<UsageCorrectionInfo> VoidLockedAsync(TContext context, System.Data.Common.DbTransaction tx, VoidEventRequest request, Guid? reportId, CancellationToken cancellationToken)
    {
        var evt = await context.Set<UsageEvent>().AsNoTracking().SingleAsync(e => e.Id == request.EventId, cancellationToken).ConfigureAwait(false);
        var report = reportId is null ? null : await context.Set<UsageReport>().AsNoTracking().SingleAsync(r => r.Id == reportId, cancellationToken).ConfigureAwait(false);
        var countMeter = request.CountMeters.Contains(evt.Meter);
        var correction = new UsageCorrection
        {
            Id = request.CorrectionId,
            UserId = evt.UserId,
            EventId = evt.Id,
            Meter = evt.Meter,
            Quantity = evt.Quantity,
            OccurredAt = evt.OccurredAt,
            IdempotencyKey = evt.IdempotencyKey,
            ReportId = reportId,
            Actor = request.Actor,
            Reason = request.Reason,
            NextAttemptAt = request.Now,
            CreatedAt = request.Now,
        };

        if (report is null || report.Status == UsageReportStatus.Dead
            || (report.Status == UsageReportStatus.Pending && report.FirstAttemptAt is null && report.LeaseExpiresAt is null))
        {
            // Stripe never had it: out of the report (never sent under its identifier, or never to be sent).
            (correction.Kind, correction.Status, correction.CompletedAt) = (Removed, Done, request.Now);
            if (report is not null)
            {
                await ShrinkReportAsync(context, report, countMeter ? 1 : evt.Quantity, cancellationToken).ConfigureAwait(false);
            }
        }
        else if (report.Status == UsageReportStatus.Pending)
        {
            throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.ReportInFlight, evt.Id,
                $"Usage event {evt.Id} is in report {report.Id}, which is being sent to Stripe; void it once the flusher has Stripe's answer.");
        }
        else if (report.Status == UsageReportStatus.NeedsReview)
        {
            throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.ReportNeedsReview, evt.Id,
                $"Usage event {evt.Id} is in report {report.Id}, whose delivery needs review; run 'usagebilling reconcile' first.");
        }
        else if (report.Status == UsageReportStatus.Sent && report.FirstAttemptAt >= request.CancelableSince)
        {
            // Stripe received it within its cancel window: the flusher cancels the report and resends the rest.
            (correction.Kind, correction.Status) = (CancelAndResend, Pending);
        }
        else if (countMeter)
        {
            throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.CountMeterTooLate, evt.Id,
                $"Usage event {evt.Id} of count meter '{evt.Meter}' reached Stripe more than 23 hours ago: Stripe can no longer cancel it and a negative event cannot undo a count.");
        }
        else if (report.Timestamp < request.CompensableSince)
        {
            throw new UsageCorrectionRefusedException(UsageCorrectionRefusal.TooOldForStripe, evt.Id,
                $"Usage event {evt.Id} is in a report timestamped {report.Timestamp:u}: Stripe accepts no events that old, so its usage can no longer change.");
        }
        else
        {
            var compensation = NewCompensation(report, evt.Id, correction.Id, evt.Quantity, request.Now);
            context.Set<UsageReport>().Add(compensation);
            (correction.Kind, correction.Status, correction.CompletedAt, correction.CorrectionReportId) = (Compensated, Done, request.Now, compensation.Id);
        }

        // Period total first, then the rollups (hourly before daily): the recorder's lock order.
        await context.Set<UsagePeriodTotal>()
            .Where(t => t.UserId == evt.UserId && t.Meter == evt.Meter && t.PeriodStart <= evt.OccurredAt && t.PeriodEnd > evt.OccurredAt)
            .ExecuteUpdateAsync(s => s.SetProperty(t => t.Quantity, t => t.Quantity - evt.Quantity).SetProperty(t => t.EventCount, t => t.EventCount - 1), cancellationToken)
            .ConfigureAwait(false);
        var reported = report?.Status == UsageReportStatus.Sent ? 1 : 0;
        var hourly = new RollupDelta(evt.UserId, UsageRollup.FloorHour(evt.OccurredAt), evt.Meter, -evt.Quantity, -1, -evt.Quantity * reported, -reported, null);
        await usageDialect.UpsertRollupsAsync(context.Database.GetDbConnection(), tx, [hourly], UsageRollup.ToDaily([hourly]), cancellationToken).ConfigureAwait(false);

        // A bucket left without events goes, as if it had never had any.
        var hour = UsageRollup.FloorHour(evt.OccurredAt);
        var day = UsageRollup.FloorDay(evt.OccurredAt);
        await context.Set<UsageHourly>().Where(h => h.UserId == evt.UserId && h.Hour == hour && h.Meter == evt.Meter && h.EventCount == 0)
            .ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
        // A folded day's row stays (its flag says the day's stray hourly rows are not to be read; it reads as no usage).
        await context.Set<UsageDaily>().Where(d => d.UserId == evt.UserId && d.Day == day && d.Meter == evt.Meter && d.EventCount == 0 && !d.HoursFolded)
            .ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
        await context.Set<UsageEvent>().Where(e => e.Id == evt.Id && e.OccurredAt == evt.OccurredAt).ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
        if (evt.IdempotencyKey is { } key)
        {
            // The key goes with its event, as it did when its uniqueness lived on usage_events.
            await context.Set<UsageEventKey>().Where(k => k.UserId == evt.UserId && k.IdempotencyKey == key && k.EventId == evt.Id)
                .ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
        }
        context.Set<UsageCorrection>().Add(correction);
        await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        return ToInfo(correction);
    }

    /// <summary>Takes one event out of a report Stripe never had; a report left without events goes.</summary>
    private static async Task ShrinkReportAsync(TContext context, UsageReport report, long value, CancellationToken cancellationToken)
    {
        if (report.EventCount <= 1)
        {
            await context.Set<UsageReport>().Where(r => r.Id == report.Id).ExecuteDeleteAsync(cancellationToken).ConfigureAwait(false);
            return;
        }

        await context.Set<UsageReport>().Where(r => r.Id == report.Id)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.Quantity, r => r.Quantity - value).SetProperty(r => r.EventCount, r => r.EventCount - 1), cancellationToken)
            .ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<UsageCorrectionInfo>> ListAsync(Guid? userId, int limit, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var rows = context.Set<UsageCorrection>().AsNoTracking();
        if (userId is { } user)
        {
            rows = rows.Where(c => c.UserId == user);
        }

        var list = await rows.OrderByDescending(c => c.CreatedAt).ThenByDescending(c => c.Id).Take(limit).ToListAsync(cancellationToken).ConfigureAwait(false);
        return [.. list.Select(ToInfo)];
    }

    public async Task<IReadOnlyList<DueCorrection>> LeaseDueAsync(DateTimeOffset now, int limit, Guid? userId, string owner, DateTimeOffset leaseUntil, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var due = context.Set<UsageCorrection>().AsNoTracking()
            .Where(c => c.Status == Pending && c.NextAttemptAt <= now && (c.LeaseExpiresAt == null || c.LeaseExpiresAt <= now));
        if (userId is { } user)
        {
            due = due.Where(c => c.UserId == user);
        }

        var candidates = await due
            .OrderBy(c => c.NextAttemptAt).Take(limit)
            .Select(c => new { c.Id, c.ReportId, c.Meter, c.Attempts })
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        var leased = new List<DueCorrection>(candidates.Count);
        foreach (var c in candidates)
        {
            // The same condition again, atomically: of two flushers only one wins the row.
            var won = await context.Set<UsageCorrection>()
                .Where(x => x.Id == c.Id && x.Status == Pending && (x.LeaseExpiresAt == null || x.LeaseExpiresAt <= now))
                .ExecuteUpdateAsync(s => s.SetProperty(x => x.LeaseOwner, owner).SetProperty(x => x.LeaseExpiresAt, leaseUntil), cancellationToken)
                .ConfigureAwait(false);
            if (won == 1)
            {
                leased.Add(new DueCorrection(c.Id, c.ReportId!.Value, c.Meter, c.Attempts));
            }
        }

        return leased;
    }

    public async Task<bool> CompleteAsync(Guid correctionId, bool countMeter, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var correction = await context.Set<UsageCorrection>().SingleOrDefaultAsync(c => c.Id == correctionId, cancellationToken).ConfigureAwait(false);
        if (correction is not { Status: Pending, ReportId: { } reportId })
        {
            return false;
        }

        // The report row lock orders this against voids and marks of the same report.
        await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), [reportId], cancellationToken).ConfigureAwait(false);
        var report = await context.Set<UsageReport>().SingleAsync(r => r.Id == reportId, cancellationToken).ConfigureAwait(false);
        correction.Status = Done;
        correction.CompletedAt = now;
        correction.Attempts++;
        correction.LastError = null;
        correction.LeaseOwner = null;
        correction.LeaseExpiresAt = null;
        if (report.Status == UsageReportStatus.Sent)
        {
            // Stripe no longer counts the report: what is left of it goes out again under a new identifier.
            report.Status = UsageReportStatus.Canceled;
            report.LastError = $"canceled on Stripe by correction {correction.Id}";
            var rid = (Guid?)reportId;
            var rest = await context.Set<UsageEvent>().AsNoTracking().Where(e => e.ReportId == rid)
                .GroupBy(e => e.ReportId)
                .Select(g => new { Quantity = g.Sum(e => e.Quantity), Count = g.Count(), Latest = g.Max(e => e.OccurredAt) })
                .SingleOrDefaultAsync(cancellationToken).ConfigureAwait(false);
            if (rest is not null)
            {
                var resend = new UsageReport
                {
                    Id = Guid.CreateVersion7(now),
                    StripeCustomerId = report.StripeCustomerId,
                    Meter = report.Meter,
                    Quantity = countMeter ? rest.Count : rest.Quantity,
                    EventCount = rest.Count,
                    Timestamp = rest.Latest,
                    PeriodStart = report.PeriodStart,
                    PeriodEnd = report.PeriodEnd,
                    Status = UsageReportStatus.Pending,
                    NextAttemptAt = now,
                    LastError = $"resend of {report.Id} after correction {correction.Id}",
                    CreatedAt = now,
                };
                context.Set<UsageReport>().Add(resend);
                correction.CorrectionReportId = resend.Id;
                await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);

                // An event is acknowledged while its report is sent: moved to the pending resend, it is not, so the
                // rollups' acknowledged columns give it back until the resend is marked sent (which adds it again).
                // Events before rollups, as a user delete's cascade goes.
                var withdrawn = UsageRollup.Withdrawn(await dialect.AcknowledgedHourlyAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), [reportId], now, cancellationToken).ConfigureAwait(false));
                await context.Set<UsageEvent>().Where(e => e.ReportId == rid)
                    .ExecuteUpdateAsync(s => s.SetProperty(e => e.ReportId, resend.Id), cancellationToken).ConfigureAwait(false);
                await usageDialect.UpsertRollupsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), withdrawn, UsageRollup.ToDaily(withdrawn), cancellationToken).ConfigureAwait(false);
            }
        }

        await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }

    public async Task<bool> CompensateAsync(Guid correctionId, string owner, DateTimeOffset now, DateTimeOffset compensableSince, string error, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await context.Database.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var correction = await context.Set<UsageCorrection>().SingleOrDefaultAsync(c => c.Id == correctionId, cancellationToken).ConfigureAwait(false);
        if (correction is not { Status: Pending, ReportId: { } reportId } || correction.LeaseOwner != owner)
        {
            return false;
        }

        await dialect.LockReportsAsync(context.Database.GetDbConnection(), transaction.GetDbTransaction(), [reportId], cancellationToken).ConfigureAwait(false);
        var report = await context.Set<UsageReport>().AsNoTracking().SingleAsync(r => r.Id == reportId, cancellationToken).ConfigureAwait(false);
        if (report.Status != UsageReportStatus.Sent || report.Timestamp < compensableSince)
        {
            return false;
        }

        var compensation = NewCompensation(report, correction.EventId, correction.Id, correction.Quantity, now);
        context.Set<UsageReport>().Add(compensation);
        correction.Kind = Compensated;
        correction.Status = Done;
        correction.CompletedAt = now;
        correction.CorrectionReportId = compensation.Id;
        correction.Attempts++;
        correction.LastError = $"cancel refused, compensated instead: {(error.Length > 1900 ? error[..1900] : error)}";
        correction.LeaseOwner = null;
        correction.LeaseExpiresAt = null;
        await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// A negative event of the voided quantity in the old report's period (its timestamp). Born attempted, so no claim
    /// merges new usage into it: its value stays the compensation alone.
    /// </summary>
    private static UsageReport NewCompensation(UsageReport report, Guid eventId, Guid correctionId, long quantity, DateTimeOffset now) => new()
    {
        Id = Guid.CreateVersion7(now),
        StripeCustomerId = report.StripeCustomerId,
        Meter = report.Meter,
        Quantity = -quantity,
        EventCount = 0,
        Timestamp = report.Timestamp,
        PeriodStart = report.PeriodStart,
        PeriodEnd = report.PeriodEnd,
        Status = UsageReportStatus.Pending,
        NextAttemptAt = now,
        FirstAttemptAt = now,
        LastError = $"compensates usage event {eventId} (correction {correctionId})",
        CreatedAt = now,
    };

    public async Task MarkFailedAsync(Guid correctionId, string owner, bool permanent, DateTimeOffset nextAttemptAt, string error, CancellationToken cancellationToken)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(owner);
        var text = error.Length > 2000 ? error[..2000] : error;
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Set<UsageCorrection>()
            .Where(c => c.Id == correctionId && c.Status == Pending && c.LeaseOwner == owner)
            .ExecuteUpdateAsync(
                s => s.SetProperty(c => c.Status, permanent ? Failed : Pending)
                    .SetProperty(c => c.Attempts, c => c.Attempts + 1)
                    .SetProperty(c => c.NextAttemptAt, nextAttemptAt)
                    .SetProperty(c => c.LastError, text)
                    .SetProperty(c => c.LeaseOwner, (string?)null)
                    .SetProperty(c => c.LeaseExpiresAt, (DateTimeOffset?)null),
                cancellationToken).ConfigureAwait(false);
    }

    private static UsageCorrectionRefusedException NotFound(Guid eventId) =>
        new(UsageCorrectionRefusal.EventNotFound, eventId, $"No usage event {eventId} (never recorded, or already voided).");

    private static UsageCorrectionInfo ToInfo(UsageCorrection c) => new(
        c.Id,
        c.EventId,
        c.UserId,
        c.Meter,
        c.Quantity,
        c.OccurredAt,
        c.Kind switch { CancelAndResend => UsageCorrectionKind.CancelAndResend, Compensated => UsageCorrectionKind.Compensated, _ => UsageCorrectionKind.Removed },
        c.Status switch { Pending => UsageCorrectionStatus.Pending, Failed => UsageCorrectionStatus.Failed, _ => UsageCorrectionStatus.Done },
        c.ReportId,
        c.CorrectionReportId,
        c.Actor,
        c.Reason,
        c.CreatedAt,
        c.CompletedAt,
        c.LastError);
}
