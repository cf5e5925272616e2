using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// <see cref="IUsageStore"/> over any DbContext that applied the UsageBilling model: EF LINQ for
/// reads, the provider dialect's raw multi-row SQL for the recorder's hot insert.
/// </summary>
/// <typeparam name="TContext">The app's context.</typeparam>
internal sealed class EfUsageStore<TContext>(IDbContextFactory<TContext> contexts, IUsageSqlDialect dialect) : IUsageStore
    where TContext : DbContext
{
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
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        var inserted = await dialect.InsertAsync(connection, transaction, events, cancellationToken).ConfigureAwait(false);
        var hourly = UsageRollup.FromInserted(events, inserted);
        await dialect.UpsertRollupsAsync(connection, transaction, hourly, UsageRollup.ToDaily(hourly), cancellationToken).ConfigureAwait(false);
        var outcomes = new StoredEventOutcome[events.Count];
        List<(Guid, string)>? missing = null;
        for (var i = 0; i < events.Count; i++)
        {
            if (inserted.Contains(events[i].Id))
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
                if (!inserted.Contains(events[i].Id) && events[i].IdempotencyKey is { } key)
                {
                    outcomes[i] = existing.TryGetValue((events[i].UserId, key), out var found)
                        ? found
                        : new StoredEventOutcome(StoredEventStatus.Failed, Error: new InvalidOperationException($"Idempotency key '{key}' conflicted but its row vanished; retry the call."));
                }
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
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

        return [.. merged.Values];
    }

    private static DateTimeOffset? Max(DateTimeOffset? a, DateTimeOffset? b) => a is null ? b : b is null ? a : a > b ? a : b;
}
