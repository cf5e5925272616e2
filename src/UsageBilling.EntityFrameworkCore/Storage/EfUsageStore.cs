using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// <see cref="IUsageStore"/> over any DbContext that applied the UsageBilling model: EF LINQ for
/// reads, the provider dialect's raw multi-row SQL for the recorder's hot insert.
/// </summary>
/// <typeparam name="TContext">The app's context.</typeparam>
internal sealed class EfUsageStore<TContext>(IDbContextFactory<TContext> contexts, IUsageSqlDialect dialect, UsageGuard? guard = null, TimeProvider? time = null) : IUsageStore, ISpendControlStore
    where TContext : DbContext
{
    /// <summary>The most accounts whose last-seen state is kept to predict which periods a batch locks.</summary>
    private const int MaxAccountHints = 100_000;

    private static readonly AccountLimits NoAccount = new(null, new Dictionary<string, AccountMeterSettings>());

    private readonly TimeProvider _time = time ?? TimeProvider.System;

    // Only a prediction: every batch reads the accounts again and checks it (see GuardedInsertAsync).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<Guid, AccountLimits> _accountHints = new();

    public int DefaultConcurrentBatches => dialect.DefaultConcurrentBatches;

    public async Task<IReadOnlyList<StoredEventOutcome>> InsertEventsAsync(IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await InsertInTransactionAsync(context, events, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (dialect.IsForeignKeyViolation(ex))
        {
            // Some user does not exist, and the database does not say which: insert each event
            // alone so exactly the bad ones fail. Rare, so simplicity beats speed here.
            var outcomes = new StoredEventOutcome[events.Count];
            for (var i = 0; i < events.Count; i++)
            {
                try
                {
                    outcomes[i] = (await InsertInTransactionAsync(context, [events[i]], cancellationToken).ConfigureAwait(false))[0];
                }
                catch (Exception rowError) when (dialect.IsForeignKeyViolation(rowError))
                {
                    outcomes[i] = StoredEventOutcome.UnknownUser;
                }
                catch (Exception rowError) when (rowError is not OperationCanceledException)
                {
                    outcomes[i] = new StoredEventOutcome(StoredEventStatus.Failed, Error: rowError);
                }
            }

            return outcomes;
        }
    }

    private async Task<StoredEventOutcome[]> InsertInTransactionAsync(TContext context, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        var connection = context.Database.GetDbConnection();
        var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            IReadOnlyDictionary<int, UsageLimitExceededException>? refused = null;
            HashSet<Guid> inserted;
            if (guard is { Enabled: true })
            {
                (inserted, refused, transaction) = await GuardedInsertAsync(connection, transaction, events, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                inserted = await dialect.InsertAsync(connection, transaction, events, cancellationToken).ConfigureAwait(false);
                var hourly = UsageRollup.FromInserted(events, inserted);
                await dialect.UpsertRollupsAsync(connection, transaction, hourly, UsageRollup.ToDaily(hourly), cancellationToken).ConfigureAwait(false);
            }

            var outcomes = await OutcomesAsync(connection, transaction, events, inserted, refused, cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            return outcomes;
        }
        finally
        {
            await transaction.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Spend control, all in the batch's transaction: lock the period totals of the batch (in one global
    /// order), insert, let the guard decide in batch order, take back what it refused, then write the
    /// rollups, the new totals and the alerts crossed. Which periods to lock depends on the accounts'
    /// subscription periods; they are predicted from the last state seen and read in the same round trip
    /// as the lock, and a wrong prediction (a period changed) rolls back and redoes the batch.
    /// </summary>
    private async Task<(HashSet<Guid> Inserted, IReadOnlyDictionary<int, UsageLimitExceededException>? Refused, DbTransaction Transaction)> GuardedInsertAsync(
        DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        var users = events.Select(e => e.UserId).ToHashSet();
        for (var attempt = 0; ; attempt++)
        {
            var hints = new Dictionary<Guid, AccountLimits>(users.Count);
            foreach (var user in users)
            {
                if (_accountHints.TryGetValue(user, out var hint))
                {
                    hints[user] = hint;
                }
            }

            var predicted = guard!.Rules(events, hints);
            var deltas = new Dictionary<PeriodKey, (DateTimeOffset End, PeriodTotals Delta)>();
            for (var i = 0; i < events.Count; i++)
            {
                var (end, delta) = deltas.TryGetValue(predicted[i].Key, out var d) ? d : (predicted[i].Period.End, default(PeriodTotals));
                deltas[predicted[i].Key] = (end, delta.Add(events[i]));
            }

            // An account's cap across meters reads every priced meter's period: lock them too (no delta).
            foreach (var member in CapMembers(predicted))
            {
                deltas.TryAdd(member.Key, (member.Period.End, default));
            }

            var keys = deltas.Select(d => (d.Key, d.Value.End, d.Value.Delta)).ToList();
            keys.Sort((a, b) => PeriodKey.LockOrder.Compare(a.Key, b.Key));
            var (accounts, totals, stored, inserted) = await dialect.AccountsLockAndInsertAsync(connection, transaction, users, keys, events, cancellationToken).ConfigureAwait(false);
            if (_accountHints.Count > MaxAccountHints)
            {
                _accountHints.Clear();
            }

            foreach (var user in users)
            {
                _accountHints[user] = accounts.TryGetValue(user, out var fresh) ? fresh : NoAccount;
            }

            var rules = guard.Rules(events, accounts);
            var mispredicted = false;
            for (var i = 0; i < rules.Length && !mispredicted; i++)
            {
                mispredicted = rules[i].Key != predicted[i].Key;
            }

            foreach (var member in CapMembers(rules))
            {
                mispredicted |= !deltas.ContainsKey(member.Key);   // a cap set since the last batch: lock its periods too
            }

            if (mispredicted)
            {
                if (attempt >= 3)
                {
                    throw new InvalidOperationException("The billing periods of this batch's accounts kept changing while it was recorded; the batch was not written. Retry the call.");
                }

                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                await transaction.DisposeAsync().ConfigureAwait(false);
                transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
                continue;
            }

            var decision = guard.Decide(events, rules, inserted, totals, _time.GetUtcNow());
            IReadOnlyDictionary<int, UsageLimitExceededException>? refused = null;
            if (decision.Refused.Count > 0)
            {
                var gone = decision.Refused.Keys.Select(i => (events[i].Id, events[i].OccurredAt)).ToList();
                await dialect.DeleteEventsAsync(connection, transaction, gone, cancellationToken).ConfigureAwait(false);
                inserted.ExceptWith(gone.Select(e => e.Id));
                refused = decision.Refused;
            }

            // The final totals, written only where the row does not hold them already (usually it does:
            // the optimistic delta was right unless the guard refused something or a replay came by).
            var changed = new List<(PeriodKey Key, PeriodTotals Totals)>();
            foreach (var (key, _, _) in keys)
            {
                var final = decision.NewTotals.TryGetValue(key, out var grown) ? grown : totals[key];
                if (final != stored[key])
                {
                    changed.Add((key, final));
                }
            }

            var hourly = UsageRollup.FromInserted(events, inserted);
            await dialect.WriteGuardedBatchAsync(connection, transaction, hourly, UsageRollup.ToDaily(hourly), changed, decision.Alerts, cancellationToken).ConfigureAwait(false);
            return (inserted, refused, transaction);
        }
    }

    private static IEnumerable<MeterRule> CapMembers(MeterRule[] rules) =>
        rules.Where(r => r.AccountCap is not null).DistinctBy(r => r.Key).SelectMany(r => r.AccountCap!.Members);

    private async Task<StoredEventOutcome[]> OutcomesAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, HashSet<Guid> inserted, IReadOnlyDictionary<int, UsageLimitExceededException>? refused, CancellationToken cancellationToken)
    {
        var outcomes = new StoredEventOutcome[events.Count];
        List<(Guid, string)>? missing = null;
        for (var i = 0; i < events.Count; i++)
        {
            if (refused is not null && refused.TryGetValue(i, out var refusal))
            {
                outcomes[i] = new StoredEventOutcome(StoredEventStatus.Rejected, Error: refusal);
            }
            else if (inserted.Contains(events[i].Id))
            {
                outcomes[i] = StoredEventOutcome.Inserted;
            }
            else if (events[i].IdempotencyKey is { } key)
            {
                (missing ??= []).Add((events[i].UserId, key));
            }
            else
            {
                outcomes[i] = new StoredEventOutcome(StoredEventStatus.Failed, Error: new InvalidOperationException($"Event {events[i].Id} was neither inserted nor a duplicate."));
            }
        }

        if (missing is not null)
        {
            var existing = await dialect.FindByKeysAsync(connection, transaction, missing, cancellationToken).ConfigureAwait(false);
            for (var i = 0; i < events.Count; i++)
            {
                if (!inserted.Contains(events[i].Id) && events[i].IdempotencyKey is { } key && refused?.ContainsKey(i) != true)
                {
                    outcomes[i] = existing.TryGetValue((events[i].UserId, key), out var found)
                        ? found
                        : new StoredEventOutcome(StoredEventStatus.Failed, Error: new InvalidOperationException($"Idempotency key '{key}' conflicted but its row vanished; retry the call."));
                }
            }
        }

        return outcomes;
    }

    public async Task<BillingState?> GetBillingStateAsync(Guid userId, CancellationToken cancellationToken)
    {
        // Every summary starts here: one prepared round trip, no LINQ pipeline.
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        return await dialect.BillingStateAsync(context.Database.GetDbConnection(), userId, cancellationToken).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<MeterDayUsage>> GetUsageByDayAsync(Guid userId, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var rows = await dialect.UsageByDayAsync(context.Database.GetDbConnection(), userId, UsageRollup.Split(from, to), cancellationToken).ConfigureAwait(false);

        // A ragged day comes back in parts: its whole hours from the hourly rollup, its ragged hour from the events.
        var merged = new Dictionary<(string, DateOnly), MeterDayUsage>();
        foreach (var row in rows)
        {
            merged[(row.Meter, row.Day)] = merged.TryGetValue((row.Meter, row.Day), out var seen)
                ? new MeterDayUsage(
                    row.Meter,
                    row.Day,
                    seen.Total + row.Total,
                    seen.Count + row.Count,
                    seen.PendingTotal + row.PendingTotal,
                    seen.PendingCount + row.PendingCount,
                    Max(seen.LastReportedAt, row.LastReportedAt))
                : row;
        }

        // A folded day whose events were all voided keeps its (empty) daily row: no usage, as a day without a row.
        return [.. merged.Values.Where(d => d.Count != 0)];
    }

    public async Task<AccountLimits> GetAccountLimitsAsync(Guid userId, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var accounts = await dialect.AccountsAsync(context.Database.GetDbConnection(), null, [userId], cancellationToken).ConfigureAwait(false);
        return accounts.TryGetValue(userId, out var account) ? account : new AccountLimits(null, new Dictionary<string, AccountMeterSettings>());
    }

    public async Task SetAccountMeterSettingsAsync(Guid userId, string meter, AccountMeterSettings settings, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var set = context.Set<UsageAccountLimit>();
        var row = await set.FirstOrDefaultAsync(x => x.UserId == userId && x.Meter == meter, cancellationToken).ConfigureAwait(false);
        var empty = settings.SpendCap is null && settings.QuantityCap is null && settings.Alerts is null;
        if (row is null)
        {
            if (empty)
            {
                return;
            }

            row = new UsageAccountLimit { UserId = userId, Meter = meter };
            set.Add(row);
        }
        else if (empty)
        {
            set.Remove(row);
            await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
            return;
        }

        row.SpendCap = settings.SpendCap;
        row.QuantityCap = settings.QuantityCap;
        row.AlertThresholds = AccountMeterSettings.FormatAlerts(settings.Alerts);
        row.UpdatedAt = now;
        try
        {
            await context.SaveChangesAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DbUpdateException ex) when (dialect.IsForeignKeyViolation(ex.InnerException ?? ex))
        {
            throw new UnknownUserException($"User {userId} does not exist; settings can only be stored for existing users.", ex);
        }
    }

    public async Task<IReadOnlyList<UsageAlert>> GetAlertsAsync(Guid userId, DateTimeOffset since, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var rows = await context.Set<UsageAlertRecord>().AsNoTracking()
            .Where(a => a.UserId == userId && a.CreatedAt >= since)
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        return [.. rows.OrderByDescending(a => a.CreatedAt).ThenByDescending(a => a.Id).Select(ToAlert)];
    }

    public async Task<IReadOnlyList<UsageAlert>> ClaimDueAlertsAsync(string owner, DateTimeOffset now, TimeSpan lease, int max, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var alerts = context.Set<UsageAlertRecord>();
        var due = await alerts.AsNoTracking()
            .Where(a => a.DeliveredAt == null && a.NextAttemptAt <= now && (a.LeaseExpiresAt == null || a.LeaseExpiresAt <= now))
            .OrderBy(a => a.NextAttemptAt)
            .Select(a => a.Id)
            .Take(max)
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        if (due.Count == 0)
        {
            return [];
        }

        // The conditions are re-checked on the row itself (PostgreSQL re-evaluates them after a lock
        // wait; SQLite has one writer), so two dispatchers never lease the same alert at once.
        var until = now + lease;
        await alerts
            .Where(a => due.Contains(a.Id) && a.DeliveredAt == null && (a.LeaseExpiresAt == null || a.LeaseExpiresAt <= now))
            .ExecuteUpdateAsync(u => u.SetProperty(a => a.LeaseOwner, owner).SetProperty(a => a.LeaseExpiresAt, until), cancellationToken).ConfigureAwait(false);
        var claimed = await alerts.AsNoTracking()
            .Where(a => due.Contains(a.Id) && a.LeaseOwner == owner && a.DeliveredAt == null)
            .ToListAsync(cancellationToken).ConfigureAwait(false);
        return [.. claimed.OrderBy(a => a.CreatedAt).Select(ToAlert)];
    }

    public async Task MarkAlertDeliveredAsync(Guid alertId, string owner, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Set<UsageAlertRecord>()
            .Where(a => a.Id == alertId && a.DeliveredAt == null)
            .ExecuteUpdateAsync(u => u.SetProperty(a => a.DeliveredAt, now).SetProperty(a => a.Attempts, a => a.Attempts + 1).SetProperty(a => a.LeaseOwner, (string?)null).SetProperty(a => a.LeaseExpiresAt, (DateTimeOffset?)null), cancellationToken)
            .ConfigureAwait(false);
    }

    public async Task MarkAlertFailedAsync(Guid alertId, string owner, string error, DateTimeOffset nextAttemptAt, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Set<UsageAlertRecord>()
            .Where(a => a.Id == alertId && a.DeliveredAt == null && a.LeaseOwner == owner)
            .ExecuteUpdateAsync(u => u.SetProperty(a => a.Attempts, a => a.Attempts + 1).SetProperty(a => a.NextAttemptAt, nextAttemptAt).SetProperty(a => a.LastError, error).SetProperty(a => a.LeaseOwner, (string?)null).SetProperty(a => a.LeaseExpiresAt, (DateTimeOffset?)null), cancellationToken)
            .ConfigureAwait(false);
    }

    private static UsageAlert ToAlert(UsageAlertRecord a)
    {
        AlertThreshold.TryParse(a.Threshold, out var threshold);
        return new UsageAlert(a.Id, a.UserId, a.Meter, a.PeriodStart, a.PeriodEnd, threshold, a.Used, a.Amount, a.CreatedAt, a.Attempts, a.DeliveredAt);
    }

    private static DateTimeOffset? Max(DateTimeOffset? a, DateTimeOffset? b) => a is null ? b : b is null ? a : a > b ? a : b;
}
