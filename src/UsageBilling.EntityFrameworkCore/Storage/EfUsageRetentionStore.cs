using System.Data.Common;
using Microsoft.EntityFrameworkCore;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// Retention, a page of accounts (billing customers) at a time — only accounts with a Stripe customer have
/// reports, so only theirs can be acknowledged — in statements of at most the batch size, each in its own
/// transaction (autocommit: a statement is atomic), so writers wait for one batch at most and a stop loses nothing.
/// </summary>
/// <remarks>
/// Why each condition (the readers of <c>usage_events</c> that must not notice):
/// <list type="bullet">
/// <item>acknowledged: the report <c>sent</c> (<c>sent_at</c>), no pending correction, both before the cutoff
/// (≥ 35 days ago): Stripe can no longer be asked to cancel (24 h) or compensate (34 days) it, the flusher
/// never looks at it again, and <c>reconcile</c> reads <c>usage_reports</c>, which stay.</item>
/// <item>the report's period ended by the cutoff: the recorder's period-total seed sums the events of a period it
/// records into, and it records only within 35 days, so those periods keep all their events.</item>
/// <item>not in the partial hour at either edge of its report's period: a period starting at 10:17 is read as
/// whole days (daily rollup), the whole hours of its edge days (hourly rollup) and 10:17–11:00 from the events.
/// The period's neighbour shares the edge, so the other side of the hour is kept by its own report.</item>
/// <item>not on a day whose hours were folded (<c>usage_daily.hours_folded</c>) with an edge of any of the account's reported
/// periods for that meter inside (the rule the hourly rows follow below): a summary reads that day's whole hours from the events.</item>
/// <item>hourly rows go only for days before the cutoff's day with no event left (a void, which changes the
/// rollups, needs its event) and no edge of any of the account's reported periods inside them: only such
/// days' hours are ever read.</item>
/// </list>
/// </remarks>
internal sealed class EfUsageRetentionStore<TContext>(IDbContextFactory<TContext> contexts, bool postgres) : IUsageRetentionStore, IUsageRetentionSteps
    where TContext : DbContext
{
    private const int AccountsPerPage = 200;

    // PostgreSQL: when event e (occurred before the cutoff) may go, given its report r — for the batched deletes and,
    // negated, for the events a partition drop keeps: one text, so the two can never disagree.
    private const string PostgresMayGo = """
        r.id = e.report_id AND r.status = 'sent' AND r.sent_at < @cutoff AND r.period_end <= @cutoff
              AND (r.period_start = date_trunc('hour', r.period_start, 'UTC') OR e.occurred_at >= date_trunc('hour', r.period_start, 'UTC') + interval '1 hour')
              AND (r.period_end = date_trunc('hour', r.period_end, 'UTC') OR e.occurred_at < date_trunc('hour', r.period_end, 'UTC'))
              AND NOT EXISTS (SELECT 1 FROM usage_corrections c WHERE c.report_id = r.id AND c.status = 'pending')
              AND NOT EXISTS (SELECT 1 FROM usage_daily d
                              WHERE d.user_id = e.user_id AND d.day = date_trunc('day', e.occurred_at, 'UTC') AND d.meter = e.meter AND d.hours_folded
                                AND EXISTS (SELECT 1 FROM usage_reports x WHERE x.stripe_customer_id = r.stripe_customer_id AND x.meter = e.meter
                                            AND ((x.period_start > d.day AND x.period_start < d.day + interval '24 hours')
                                              OR (x.period_end > d.day AND x.period_end < d.day + interval '24 hours'))))
        """;

    // The events' idempotency keys go in the same statement (one transaction).
    private const string PostgresEventsSql = $$"""
        WITH gone AS (
        DELETE FROM usage_events WHERE (id, occurred_at) IN (
            SELECT e.id, e.occurred_at FROM usage_events e
            JOIN usage_reports r ON r.id = e.report_id
            WHERE e.user_id IN ({users}) AND e.occurred_at < @cutoff
              AND {{PostgresMayGo}}
            LIMIT @batch)
        RETURNING id, user_id, idempotency_key),
        keys AS (DELETE FROM usage_event_keys k USING gone g WHERE k.user_id = g.user_id AND k.idempotency_key = g.idempotency_key AND k.event_id = g.id)
        SELECT count(*) FROM gone
        """;

    private const string PostgresHourlySql = """
        DELETE FROM usage_hourly WHERE ctid = ANY(ARRAY(
            SELECT h.ctid FROM usage_hourly h
            JOIN billing_customers bc ON bc.user_id = h.user_id
            CROSS JOIN LATERAL (SELECT date_trunc('day', h.hour, 'UTC') AS d) day
            WHERE h.user_id IN ({users}) AND h.hour < @cutoff_day
              AND NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.user_id = h.user_id AND e.occurred_at >= day.d AND e.occurred_at < day.d + interval '24 hours' AND e.meter = h.meter)
              AND NOT EXISTS (SELECT 1 FROM usage_reports r WHERE r.stripe_customer_id = bc.stripe_customer_id AND r.meter = h.meter
                              AND ((r.period_start > day.d AND r.period_start < day.d + interval '24 hours')
                                OR (r.period_end > day.d AND r.period_end < day.d + interval '24 hours')))
            LIMIT @batch))
        """;

    // SQLite stores instants as Unix microseconds: an hour is 3 600 000 000, a day 86 400 000 000.
    private const string SqliteEventsSql = """
        DELETE FROM usage_events WHERE id IN (
            SELECT e.id FROM usage_events e
            JOIN usage_reports r ON r.id = e.report_id
            WHERE e.user_id IN ({users}) AND e.occurred_at < @cutoff AND r.sent_at < @cutoff
              AND r.status = 'sent' AND r.period_end <= @cutoff
              AND (r.period_start % 3600000000 = 0 OR e.occurred_at >= r.period_start - r.period_start % 3600000000 + 3600000000)
              AND (r.period_end % 3600000000 = 0 OR e.occurred_at < r.period_end - r.period_end % 3600000000)
              AND NOT EXISTS (SELECT 1 FROM usage_corrections c WHERE c.report_id = r.id AND c.status = 'pending')
              AND NOT EXISTS (SELECT 1 FROM usage_daily d
                              WHERE d.user_id = e.user_id AND d.day = e.occurred_at - e.occurred_at % 86400000000 AND d.meter = e.meter AND d.hours_folded
                                AND EXISTS (SELECT 1 FROM usage_reports x WHERE x.stripe_customer_id = r.stripe_customer_id AND x.meter = e.meter
                                            AND ((x.period_start > d.day AND x.period_start < d.day + 86400000000)
                                              OR (x.period_end > d.day AND x.period_end < d.day + 86400000000))))
            LIMIT @batch)
        RETURNING user_id, idempotency_key
        """;

    private const string SqliteHourlySql = """
        DELETE FROM usage_hourly WHERE rowid IN (
            SELECT h.rowid FROM usage_hourly h
            JOIN billing_customers bc ON bc.user_id = h.user_id
            WHERE h.user_id IN ({users}) AND h.hour < @cutoff_day
              AND NOT EXISTS (SELECT 1 FROM usage_events e WHERE e.user_id = h.user_id AND e.meter = h.meter
                              AND e.occurred_at >= h.hour - h.hour % 86400000000 AND e.occurred_at < h.hour - h.hour % 86400000000 + 86400000000)
              AND NOT EXISTS (SELECT 1 FROM usage_reports r WHERE r.stripe_customer_id = bc.stripe_customer_id AND r.meter = h.meter
                              AND ((r.period_start > h.hour - h.hour % 86400000000 AND r.period_start < h.hour - h.hour % 86400000000 + 86400000000)
                                OR (r.period_end > h.hour - h.hour % 86400000000 AND r.period_end < h.hour - h.hour % 86400000000 + 86400000000)))
            LIMIT @batch)
        """;

    public Task<UsagePruneResult> PruneAsync(DateTimeOffset cutoff, int batchSize, CancellationToken cancellationToken) =>
        PruneAsync(cutoff, batchSize, dropPartitions: true, foldHourly: true, cancellationToken);

    public async Task<UsagePruneResult> PruneAsync(DateTimeOffset cutoff, int batchSize, bool dropPartitions, bool foldHourly, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var cutoffDay = UsageRollup.FloorDay(cutoff);

        // One prune at a time across instances: a partition drop beside another instance's batched deletes of the same
        // month would count its events twice and could deadlock with them.
        return await UnderPruneLockAsync(async connection =>
        {
            var (partitions, dropped) = postgres && dropPartitions
                ? await DropPartitionsAsync((Npgsql.NpgsqlConnection)connection, cutoff, cancellationToken).ConfigureAwait(false)
                : (0, 0L);
            long events = dropped, hourly = 0;
            var accounts = 0;
            object? after = null;
            while (true)
            {
                var page = await AccountsAsync(connection, after, cancellationToken).ConfigureAwait(false);
                if (page.Count > 0)
                {
                    accounts += page.Count;
                    events += await DeleteInBatchesAsync(connection, postgres ? PostgresEventsSql : SqliteEventsSql, page, cutoff, cutoffDay, batchSize, cancellationToken).ConfigureAwait(false);
                    hourly += !foldHourly ? 0 : await DeleteInBatchesAsync(connection, postgres ? PostgresHourlySql : SqliteHourlySql, page, cutoff, cutoffDay, batchSize, cancellationToken).ConfigureAwait(false);
                }

                if (page.Count < AccountsPerPage)
                {
                    break;
                }

                after = page[^1];
            }

            return new UsagePruneResult(cutoff, events, hourly, accounts) { PartitionsDropped = partitions };
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Runs <paramref name="work"/> on one open connection; on PostgreSQL holding the prune's session advisory lock
    /// (waited for) from start to end, which prunes and folds share.
    /// </summary>
    private async Task<T> UnderPruneLockAsync<T>(Func<DbConnection, Task<T>> work, CancellationToken cancellationToken)
    {
        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        var connection = context.Database.GetDbConnection();
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var locked = false;
        try
        {
            if (postgres)
            {
                await using var gate = new Npgsql.NpgsqlCommand($"SELECT pg_advisory_lock({PruneLockKey})", (Npgsql.NpgsqlConnection)connection) { CommandTimeout = 0 };
                await gate.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                locked = true;
            }

            return await work(connection).ConfigureAwait(false);
        }
        finally
        {
            if (locked)
            {
                await using var release = new Npgsql.NpgsqlCommand($"SELECT pg_advisory_unlock({PruneLockKey})", (Npgsql.NpgsqlConnection)connection);
                await release.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
            }

            await context.Database.CloseConnectionAsync().ConfigureAwait(false);
        }
    }

    /// <summary>A closed day with at most this many events of a meter is folded: a summary edge inside it reads at most this many events.</summary>
    internal const int FoldedDayMaxEvents = 96;

    private const string PostgresFoldSql = """
        UPDATE usage_daily d SET hours_folded = true
        WHERE d.ctid = ANY(ARRAY(
            SELECT x.ctid FROM usage_daily x
            JOIN unnest(@users, @days, @meters) AS k(user_id, day, meter) ON x.user_id = k.user_id AND x.day = k.day AND x.meter = k.meter
            WHERE NOT x.hours_folded AND x.event_count <= @max_events
              AND x.event_count = (SELECT count(*) FROM usage_events e WHERE e.user_id = x.user_id AND e.occurred_at >= x.day AND e.occurred_at < x.day + interval '24 hours' AND e.meter = x.meter)
            FOR UPDATE OF x SKIP LOCKED))
        RETURNING d.user_id, d.day, d.meter
        """;

    private const string PostgresFoldHourlySql = """
        DELETE FROM usage_hourly WHERE ctid = ANY(ARRAY(
            SELECT h.ctid FROM usage_hourly h
            JOIN unnest(@users, @days, @meters) AS k(user_id, day, meter) ON h.user_id = k.user_id AND h.meter = k.meter AND h.hour >= k.day AND h.hour < k.day + interval '24 hours'
            FOR UPDATE OF h SKIP LOCKED))
        """;

    private const string SqliteFoldSql = """
        UPDATE usage_daily SET hours_folded = 1
        WHERE user_id = @user AND day = @day AND meter = @meter AND NOT hours_folded AND event_count <= @max_events
          AND event_count = (SELECT count(*) FROM usage_events e WHERE e.user_id = @user AND e.occurred_at >= @day AND e.occurred_at < @day + 86400000000 AND e.meter = @meter)
        """;

    private const string SqliteFoldHourlySql = """
        DELETE FROM usage_hourly WHERE user_id = @user AND hour >= @day AND hour < @day + 86400000000 AND meter = @meter
        """;

    /// <summary>
    /// Folds the hours of the closed days (before yesterday, UTC) that have at most <see cref="FoldedDayMaxEvents"/>
    /// events of a meter into their daily row: sets <c>usage_daily.hours_folded</c>, then deletes the day's
    /// <c>usage_hourly</c> rows. A summary edge inside a folded day reads the day's hours from its events, so a day
    /// is folded only while all its events are there (its event count matches the daily row's; a prune, which could
    /// make them differ, never runs meanwhile: both hold the prune lock). Rows locked by a writer are skipped (left
    /// for the next run) rather than waited for, so the fold never deadlocks with the recorder; an hourly row
    /// skipped, or written into a folded day later, is never read.
    /// </summary>
    public async Task<UsageFoldResult> FoldHoursAsync(DateTimeOffset now, DateTimeOffset? since, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        var closedBefore = UsageRollup.FloorDay(now).AddDays(-1);
        return await UnderPruneLockAsync(async connection =>
        {
            long days = 0, hourly = 0;
            (object User, object Day, string Meter)? after = null;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var page = await UnfoldedDaysAsync(connection, since is { } from ? UsageRollup.FloorDay(from) : null, closedBefore, after, batchSize, cancellationToken).ConfigureAwait(false);
                if (page.Count == 0)
                {
                    break;
                }

                after = page[^1];
                var (folded, deleted) = postgres
                    ? await FoldPostgresAsync((Npgsql.NpgsqlConnection)connection, page, cancellationToken).ConfigureAwait(false)
                    : await FoldSqliteAsync(connection, page, cancellationToken).ConfigureAwait(false);
                days += folded;
                hourly += deleted;
                if (page.Count < batchSize)
                {
                    break;
                }
            }

            return new UsageFoldResult(days, hourly);
        }, cancellationToken).ConfigureAwait(false);
    }

    // A page of the closed daily rows not folded yet, in key order after the previous page (dense days stay unfolded and are passed over).
    private async Task<List<(object User, object Day, string Meter)>> UnfoldedDaysAsync(DbConnection connection, DateTimeOffset? since, DateTimeOffset closedBefore, (object User, object Day, string Meter)? after, int batchSize, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT user_id, day, meter FROM usage_daily
            WHERE NOT hours_folded AND day < @closed {(since is null ? "" : "AND day >= @since")} {(after is null ? "" : "AND (day, user_id, meter) > (@day, @user, @meter)")}
            ORDER BY day, user_id, meter LIMIT @batch
            """;
        Add(command, "closed", Time(closedBefore));
        if (since is { } from)
        {
            Add(command, "since", Time(from));
        }

        Add(command, "batch", batchSize);
        if (after is { } last)
        {
            Add(command, "day", last.Day);
            Add(command, "user", last.User);
            Add(command, "meter", last.Meter);
        }

        var page = new List<(object, object, string)>(Math.Min(batchSize, 10_000));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            page.Add((reader.GetValue(0), postgres ? reader.GetFieldValue<DateTimeOffset>(1) : reader.GetValue(1), reader.GetString(2)));
        }

        return page;
    }

    // Two statements, each its own transaction: the flag, then the hourly rows of the days flagged (a stop between them
    // leaves hourly rows that are never read).
    private static async Task<(long Days, long Hourly)> FoldPostgresAsync(Npgsql.NpgsqlConnection connection, List<(object User, object Day, string Meter)> page, CancellationToken cancellationToken)
    {
        var users = new List<Guid>();
        var days = new List<DateTimeOffset>();
        var meters = new List<string>();
        await using (var fold = new Npgsql.NpgsqlCommand(PostgresFoldSql, connection) { CommandTimeout = 0 })
        {
            fold.Parameters.Add(new Npgsql.NpgsqlParameter<Guid[]>("users", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Uuid) { TypedValue = [.. page.Select(k => (Guid)k.User)] });
            fold.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset[]>("days", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = [.. page.Select(k => (DateTimeOffset)k.Day)] });
            fold.Parameters.Add(new Npgsql.NpgsqlParameter<string[]>("meters", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = [.. page.Select(k => k.Meter)] });
            fold.Parameters.Add(new Npgsql.NpgsqlParameter<int>("max_events", FoldedDayMaxEvents));
            await using var reader = await fold.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                users.Add(reader.GetGuid(0));
                days.Add(reader.GetFieldValue<DateTimeOffset>(1));
                meters.Add(reader.GetString(2));
            }
        }

        if (users.Count == 0)
        {
            return (0, 0);
        }

        await using var delete = new Npgsql.NpgsqlCommand(PostgresFoldHourlySql, connection) { CommandTimeout = 0 };
        delete.Parameters.Add(new Npgsql.NpgsqlParameter<Guid[]>("users", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Uuid) { TypedValue = [.. users] });
        delete.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset[]>("days", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.TimestampTz) { TypedValue = [.. days] });
        delete.Parameters.Add(new Npgsql.NpgsqlParameter<string[]>("meters", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text) { TypedValue = [.. meters] });
        return (users.Count, await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false));
    }

    // SQLite (one writer at a time): the page in one transaction, a day flagged and its hourly rows deleted together.
    private static async Task<(long Days, long Hourly)> FoldSqliteAsync(DbConnection connection, List<(object User, object Day, string Meter)> page, CancellationToken cancellationToken)
    {
        long days = 0, hourly = 0;
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        await using var fold = connection.CreateCommand();
        await using var delete = connection.CreateCommand();
        (fold.Transaction, fold.CommandText, delete.Transaction, delete.CommandText) = (transaction, SqliteFoldSql, transaction, SqliteFoldHourlySql);
        Add(fold, "max_events", FoldedDayMaxEvents);
        foreach (var command in new[] { fold, delete })
        {
            Add(command, "user", DBNull.Value);
            Add(command, "day", DBNull.Value);
            Add(command, "meter", DBNull.Value);
        }

        foreach (var (user, day, meter) in page)
        {
            foreach (var command in new[] { fold, delete })
            {
                (command.Parameters["user"].Value, command.Parameters["day"].Value, command.Parameters["meter"].Value) = (user, day, meter);
            }

            if (await fold.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 1)
            {
                days++;
                hourly += await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return (days, hourly);
    }

    /// <summary>The session advisory lock a PostgreSQL prune holds from start to end.</summary>
    private const long PruneLockKey = 7817_0000_0004;

    public async Task<IReadOnlyList<string>> EnsurePartitionsAsync(DateTimeOffset now, CancellationToken cancellationToken)
    {
        if (!postgres)
        {
            return [];
        }

        await using var context = await contexts.CreateDbContextAsync(cancellationToken).ConfigureAwait(false);
        await context.Database.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        var connection = (Npgsql.NpgsqlConnection)context.Database.GetDbConnection();
        for (var attempt = 1; ; attempt++)
        {
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var created = await CreatePartitionsAsync(connection, transaction, now, cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return created;
            }
            catch (Npgsql.PostgresException ex) when (ex.SqlState is Npgsql.PostgresErrorCodes.LockNotAvailable or Npgsql.PostgresErrorCodes.DeadlockDetected && attempt < PartitionAttempts)
            {
                // A writer held a lock the attach needs (see CreatePartitionsAsync): given way to, tried again shortly.
                await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Attempts of <see cref="EnsurePartitionsAsync"/> before its error is the caller's (the retention service logs it and retries next tick).</summary>
    private const int PartitionAttempts = 10;

    // Writers and readers are held off while a month is attached (an exclusive lock on usage_events): an insert that had
    // already opened usage_events would route a row of that month to the default partition by the partitions it saw, and
    // fail the default partition's new constraint once the attach commits; a read planned before the commit (by the
    // partitions it saw) and run after it (it waited for the default partition's lock) would scan the default partition
    // without the month's moved rows and not the new partition that holds them now: it would miss them. The lock waits are short (lock_timeout, below
    // deadlock_timeout): a claim or a void that locked rows of usage_events (a plain lock on the parent and the
    // default partition) and then needs to write would otherwise wait for this transaction while it waits for them —
    // this one gives way and is tried again. The attach also locks the users table (the partition's foreign key), so
    // that is locked first, before usage_events, as a user's deletion does (LockReferencedTablesAsync).
    private static async Task<List<string>> CreatePartitionsAsync(Npgsql.NpgsqlConnection connection, DbTransaction transaction, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await ExecuteAsync(connection, transaction, $"SELECT pg_advisory_xact_lock({PartitionLockKey})", cancellationToken).ConfigureAwait(false);
        var (partitioned, existing, defaultPartition) = await PartitionsAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
        var created = new List<string>();
        if (!partitioned)
        {
            return created;
        }

        var first = FloorMonth(now - UsageRules.MaxAge);
        var last = FloorMonth(now).AddMonths(2);
        for (var month = first; month <= last; month = month.AddMonths(1))
        {
            var name = PartitionName(month);
            if (existing.ContainsKey(name))
            {
                continue;
            }

            // A new table, filled with what the default partition held for its month, then attached (which builds the
            // parent's indexes on it and checks the default partition holds no row of its range).
            var (from, to) = (Literal(month), Literal(month.AddMonths(1)));
            if (created.Count == 0)
            {
                await LockReferencedTablesAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
            }

            var sql = created.Count == 0 ? "LOCK TABLE usage_events IN ACCESS EXCLUSIVE MODE; " : "";
            sql += $"CREATE TABLE {name} (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE);";
            if (defaultPartition is not null)
            {
                sql += $" WITH moved AS (DELETE FROM {defaultPartition} WHERE occurred_at >= {from} AND occurred_at < {to} RETURNING *) INSERT INTO {name} SELECT * FROM moved;";
            }

            sql += $" ALTER TABLE usage_events ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to});";
            await ExecuteAsync(connection, transaction, sql, cancellationToken).ConfigureAwait(false);
            created.Add(name);
        }

        return created;
    }

    /// <summary>
    /// PostgreSQL: drops whole the monthly partitions of <c>usage_events</c> that ended by <paramref name="cutoff"/>, each
    /// in three transactions, so that writers are held up only for the second, short one and no transaction waits for a
    /// lock while holding one a writer may need:
    /// <list type="number">
    /// <item>without locking out anyone, the ids of the events that must stay (the batched delete's conditions,
    /// negated) are set aside and the idempotency keys of the others deleted, and that is committed. A month keeping
    /// more than a tenth of its events (and over <see cref="KeptRowsAlwaysMoved"/>) is left to the batched delete: its
    /// kept rows would only pile up in the default partition.</item>
    /// <item>the users table is locked against writes and the partition detached (an exclusive lock on
    /// <c>usage_events</c>; both waited for briefly, else the month is left to this run's batched delete and a later
    /// run), the kept events are inserted again as they are now (into the default partition, which the detached range
    /// falls to; a kept event claimed or voided meanwhile comes as it is) and the detached table renamed
    /// <c>…_detached</c>: its events leave <c>usage_events</c> in one commit. Then, holding nothing writers or readers
    /// of <c>usage_events</c> wait for, what went is counted and the detached table emptied.</item>
    /// <item>the table is dropped (<see cref="DropDetachedAsync"/>); one an earlier run left is dropped first.</item>
    /// </list>
    /// Why the set aside in step 1 is still right in step 2, and why the keys may go before their events: an event that
    /// may go is acknowledged more than 35 days ago, so Stripe can neither cancel nor compensate it — a void is refused
    /// and no correction can make it pending — and no event that old is recorded or claimed again; writers only claim or
    /// void kept ones, which step 2 re-reads. If step 2 does not happen, this run's batched delete takes those events.
    /// </summary>
    private static async Task<(int Partitions, long Events)> DropPartitionsAsync(Npgsql.NpgsqlConnection connection, DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        Dictionary<string, DateTimeOffset> existing;
        var detached = new List<string>();
        await using (var read = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false))
        {
            (_, existing, _) = await PartitionsAsync(connection, read, cancellationToken).ConfigureAwait(false);
            await using (var command = new Npgsql.NpgsqlCommand(DetachedMonthsSql, connection, read))
            {
                await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    detached.Add(reader.GetString(0));
                }
            }

            await read.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        foreach (var name in detached)
        {
            await DropDetachedAsync(connection, name, cancellationToken).ConfigureAwait(false);
        }

        var partitions = 0;
        long events = 0;
        foreach (var (name, month) in existing.Where(p => p.Value.AddMonths(1) <= cutoff).OrderBy(p => p.Value))
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                if (await SetAsideKeptAsync(connection, name, cutoff, cancellationToken).ConfigureAwait(false) is not { } drop)
                {
                    break;
                }

                if (!drop)
                {
                    continue;
                }

                if (await DetachAsync(connection, name, cancellationToken).ConfigureAwait(false) is not { } gone)
                {
                    continue;
                }

                partitions++;
                events += gone;
            }
            finally
            {
                await DropKeptAsync(connection).ConfigureAwait(false);
            }

            await DropDetachedAsync(connection, name + DetachedSuffix, cancellationToken).ConfigureAwait(false);
        }

        return (partitions, events);
    }

    /// <summary>
    /// Step 1 of <see cref="DropPartitionsAsync"/>: sets the ids of the month's events that must stay aside (the session's
    /// temporary table <c>ub_kept</c>) and deletes the others' idempotency keys, committed. Null when partitions are being
    /// created (left for a later run); false when the month keeps too many events to drop it whole.
    /// </summary>
    private static async Task<bool?> SetAsideKeptAsync(Npgsql.NpgsqlConnection connection, string name, DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        if (!await TryPartitionLockAsync(connection, transaction, cancellationToken).ConfigureAwait(false))
        {
            return null;
        }

        var keep = $"""
            DROP TABLE IF EXISTS pg_temp.ub_kept;
            CREATE TEMP TABLE ub_kept AS
            SELECT e.id FROM {name} e
            WHERE NOT EXISTS (
                SELECT 1 FROM usage_reports r
                WHERE EXISTS (SELECT 1 FROM billing_customers bc WHERE bc.user_id = e.user_id)
                  AND {PostgresMayGo});
            SELECT (SELECT count(*) FROM {name}), (SELECT count(*) FROM ub_kept);
            """;
        long total, kept;
        await using (var command = new Npgsql.NpgsqlCommand(keep, connection, transaction) { CommandTimeout = 0 })
        {
            command.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset>("cutoff", cutoff));
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            (total, kept) = (reader.GetInt64(0), reader.GetInt64(1));
        }

        if (kept > KeptRowsAlwaysMoved && kept * 10 > total)
        {
            await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
            return false;
        }

        await ExecuteAsync(connection, transaction, $"""
            DELETE FROM usage_event_keys k USING {name} e
            WHERE k.user_id = e.user_id AND k.idempotency_key = e.idempotency_key AND k.event_id = e.id
              AND NOT EXISTS (SELECT 1 FROM ub_kept x WHERE x.id = e.id)
            """, cancellationToken).ConfigureAwait(false);
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }

    // The session's ub_kept, once its month is done; on a broken connection there is nothing to drop (and the original
    // error is the one to see).
    private static async Task DropKeptAsync(Npgsql.NpgsqlConnection connection)
    {
        if (connection.State != System.Data.ConnectionState.Open)
        {
            return;
        }

        await using var clean = new Npgsql.NpgsqlCommand("DROP TABLE IF EXISTS pg_temp.ub_kept", connection);
        await clean.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>
    /// Step 2 of <see cref="DropPartitionsAsync"/>: detaches the month, puts its kept events back and renames it
    /// <c>…_detached</c>, in one transaction; then, with <c>usage_events</c> no longer locked, counts what went and empties
    /// the detached table. Returns how many events went, or null if a lock it needs was busy.
    /// </summary>
    private static async Task<long?> DetachAsync(Npgsql.NpgsqlConnection connection, string name, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!await TryPartitionLockAsync(connection, transaction, cancellationToken).ConfigureAwait(false))
            {
                return null;
            }

            await LockReferencedTablesAsync(connection, transaction, cancellationToken).ConfigureAwait(false);
            await ExecuteAsync(connection, transaction, $"ALTER TABLE usage_events DETACH PARTITION {name}", cancellationToken).ConfigureAwait(false);

            await ExecuteAsync(connection, transaction, $"INSERT INTO usage_events SELECT e.* FROM {name} e WHERE e.id IN (SELECT id FROM ub_kept); ALTER TABLE {name} RENAME TO {name}{DetachedSuffix}", cancellationToken).ConfigureAwait(false);
            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Npgsql.PostgresException ex) when (ex.SqlState is Npgsql.PostgresErrorCodes.LockNotAvailable or Npgsql.PostgresErrorCodes.DeadlockDetected or Npgsql.PostgresErrorCodes.UndefinedTable)
        {
            // Busy: this run's batched delete takes what it may from the partition, a later run drops it.
            // Gone: another instance dropped it first.
            await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
            return null;
        }

        // Out of usage_events now, so nobody waits for this: what went is what the detached month holds but the kept
        // events put back (a kept event voided meanwhile was neither put back nor is it there).
        await using var empty = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        long held;
        await using (var command = new Npgsql.NpgsqlCommand($"SELECT count(*) FROM {name}{DetachedSuffix} e WHERE NOT EXISTS (SELECT 1 FROM ub_kept k WHERE k.id = e.id)", connection, empty) { CommandTimeout = 0 })
        {
            held = (long)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }

        await ExecuteAsync(connection, empty, $"TRUNCATE {name}{DetachedSuffix}", cancellationToken).ConfigureAwait(false);
        await empty.CommitAsync(cancellationToken).ConfigureAwait(false);
        return held;
    }

    // Not while partitions are being created (EnsurePartitionsAsync holds this lock).
    private static async Task<bool> TryPartitionLockAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        await using var gate = new Npgsql.NpgsqlCommand($"SELECT pg_try_advisory_xact_lock({PartitionLockKey})", connection, transaction);
        return await gate.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is true;
    }

    /// <summary>What a detached, emptied month is renamed to end with, for the next prune to drop if this one could not.</summary>
    private const string DetachedSuffix = "_detached";

    /// <summary>
    /// Drops an emptied month detached from <c>usage_events</c> (step 3 of <see cref="DropPartitionsAsync"/>). The drop
    /// takes the users table exclusively (it removes the table's foreign key triggers there) after the table itself; a
    /// user's deletion takes them the other way round (its cascade reaches the detached table too), so the users table
    /// is locked first, each time waiting briefly, a few times. Holding nothing else, it blocks no one for long; if the
    /// table stays (busy, not allowed, or stopped), it holds no events of <c>usage_events</c> and the next prune tries again.
    /// </summary>
    private static async Task DropDetachedAsync(Npgsql.NpgsqlConnection connection, string name, CancellationToken cancellationToken)
    {
        for (var attempt = 1; attempt <= DropAttempts; attempt++)
        {
            await using var transaction = await connection.BeginTransactionAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                var tables = await ReferencedTablesAsync(connection, transaction, name, cancellationToken).ConfigureAwait(false);
                var sql = $"SET LOCAL lock_timeout = '{DropLockTimeoutMs}ms'; ";
                sql += tables is null ? "" : $"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE; ";
                await ExecuteAsync(connection, transaction, sql + $"DROP TABLE IF EXISTS {name}", cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(CancellationToken.None).ConfigureAwait(false);
                return;
            }
            catch (Npgsql.PostgresException ex) when (ex.SqlState is Npgsql.PostgresErrorCodes.LockNotAvailable or Npgsql.PostgresErrorCodes.DeadlockDetected)
            {
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Npgsql.PostgresException)
            {
                // Not the role's to drop, or something depends on it: left as it is (no part of usage_events), for the operator.
                await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException)
            {
                // Stopping: the table is no part of usage_events; the next prune drops it.
                return;
            }

            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(100 * attempt), cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Tries of <see cref="DropDetachedAsync"/> in one prune, each waiting <see cref="DropLockTimeoutMs"/> at most for the users table.</summary>
    private const int DropAttempts = 5;

    /// <summary>How long a drop of a detached month waits for the users table (which, meanwhile, holds up its readers).</summary>
    private const int DropLockTimeoutMs = 200;

    /// <summary>
    /// The tables <paramref name="table"/>'s foreign keys reference that this role may lock (LOCK TABLE in the modes used
    /// here needs UPDATE, DELETE or TRUNCATE on the table and USAGE on its schema), as a list for LOCK TABLE; null if none.
    /// </summary>
    private static async Task<string?> ReferencedTablesAsync(Npgsql.NpgsqlConnection connection, DbTransaction transaction, string table, CancellationToken cancellationToken)
    {
        await using var command = new Npgsql.NpgsqlCommand(
            """
            SELECT string_agg(DISTINCT c.confrelid::regclass::text, ', ') FROM pg_constraint c JOIN pg_class t ON t.oid = c.confrelid
            WHERE c.conrelid = to_regclass(@table) AND c.contype = 'f' AND c.confrelid <> c.conrelid
              AND has_schema_privilege(t.relnamespace, 'USAGE')
              AND (has_table_privilege(c.confrelid, 'UPDATE') OR has_table_privilege(c.confrelid, 'DELETE') OR has_table_privilege(c.confrelid, 'TRUNCATE'))
            """,
            connection,
            (Npgsql.NpgsqlTransaction)transaction);
        command.Parameters.Add(new Npgsql.NpgsqlParameter<string>("table", table));
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as string;
    }

    /// <summary>
    /// Locks the tables <c>usage_events</c>' foreign keys reference (the app's users table) in the mode a partition's
    /// attach or detach takes on them, before <c>usage_events</c> itself: the order a user's deletion takes them in (its
    /// cascade), so neither waits for the other while holding what the other needs. A recorder's read of its user does
    /// not conflict with this mode; writes to users wait for it briefly (<see cref="GiveWayFirstSql"/>, which also
    /// applies to the attach or detach after it). A table the role may not lock is left to the attach's or detach's own lock.
    /// </summary>
    private static async Task LockReferencedTablesAsync(Npgsql.NpgsqlConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
    {
        var tables = await ReferencedTablesAsync(connection, transaction, "usage_events", cancellationToken).ConfigureAwait(false);
        await ExecuteAsync(connection, transaction, GiveWayFirstSql + (tables is null ? "" : $" LOCK TABLE {tables} IN SHARE ROW EXCLUSIVE MODE"), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Sets the transaction's lock_timeout to half the server's deadlock_timeout (between 1 and 500 ms), for a wait on a
    /// lock while holding one others may wait for: this transaction gives way (and is tried again later) before the
    /// deadlock detector could pick the app's transaction instead.
    /// </summary>
    private const string GiveWayFirstSql =
        "SELECT set_config('lock_timeout', GREATEST(1, LEAST(500, setting::int / 2))::text || 'ms', true) FROM pg_settings WHERE name = 'deadlock_timeout';";

    /// <summary>Months a prune detached and renamed but did not get to drop (<see cref="DetachedSuffix"/>), beside <c>usage_events</c>.</summary>
    private const string DetachedMonthsSql = """
        SELECT c.oid::regclass::text FROM pg_class c
        WHERE c.relkind = 'r' AND NOT c.relispartition AND c.relname ~ '^usage_events_y[0-9]{4}m[0-9]{2}_detached$'
          AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass('usage_events'))
        ORDER BY 1
        """;

    /// <summary>A month with at most this many events to keep is always dropped (its kept events moved), whatever their share.</summary>
    private const int KeptRowsAlwaysMoved = 10_000;

    /// <summary>The advisory lock partition creation waits for and partition drops try (one instance changes partitions at a time).</summary>
    private const long PartitionLockKey = 7817_0000_0003;

    /// <summary>Whether usage_events is partitioned, its monthly partitions (by name, with their month) and its default partition.</summary>
    private static async Task<(bool Partitioned, Dictionary<string, DateTimeOffset> Months, string? Default)> PartitionsAsync(Npgsql.NpgsqlConnection connection, DbTransaction transaction, CancellationToken cancellationToken)
    {
        const string sql = """
            SELECT c.relname, c.oid = p.partdefid
            FROM pg_partitioned_table p
            JOIN pg_inherits i ON i.inhparent = p.partrelid
            JOIN pg_class c ON c.oid = i.inhrelid
            WHERE p.partrelid = to_regclass('usage_events')
            UNION ALL
            SELECT NULL, NULL FROM pg_partitioned_table p WHERE p.partrelid = to_regclass('usage_events')
            """;
        var months = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        string? fallback = null;
        var partitioned = false;
        await using var command = new Npgsql.NpgsqlCommand(sql, connection, (Npgsql.NpgsqlTransaction)transaction);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            partitioned = true;
            if (reader.IsDBNull(0))
            {
                continue;
            }

            var name = reader.GetString(0);
            if (reader.GetBoolean(1))
            {
                fallback = name;
            }
            else if (System.Text.RegularExpressions.Regex.Match(name, "^usage_events_y([0-9]{4})m([0-9]{2})$") is { Success: true } m)
            {
                months[name] = new DateTimeOffset(int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), 1, 0, 0, 0, TimeSpan.Zero);
            }
        }

        return (partitioned, months, fallback);
    }

    private static DateTimeOffset FloorMonth(DateTimeOffset at)
    {
        var utc = at.UtcDateTime;
        return new DateTimeOffset(utc.Year, utc.Month, 1, 0, 0, 0, TimeSpan.Zero);
    }

    private static string PartitionName(DateTimeOffset month) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"usage_events_y{month.Year:D4}m{month.Month:D2}");

    private static string Literal(DateTimeOffset at) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"'{at.UtcDateTime:yyyy-MM-dd HH:mm:ss}+00'::timestamptz");

    private static async Task ExecuteAsync(Npgsql.NpgsqlConnection connection, DbTransaction transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new Npgsql.NpgsqlCommand(sql, connection, (Npgsql.NpgsqlTransaction)transaction) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    // The user id is passed back as the database returned it (uuid on PostgreSQL, the stored text on SQLite).
    private static async Task<List<object>> AccountsAsync(DbConnection connection, object? after, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = after is null
            ? $"SELECT user_id FROM billing_customers ORDER BY user_id LIMIT {AccountsPerPage}"
            : $"SELECT user_id FROM billing_customers WHERE user_id > @after ORDER BY user_id LIMIT {AccountsPerPage}";
        if (after is not null)
        {
            Add(command, "after", after);
        }

        var page = new List<object>(AccountsPerPage);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            page.Add(reader.GetValue(0));
        }

        return page;
    }

    private async Task<long> DeleteInBatchesAsync(DbConnection connection, string sql, List<object> users, DateTimeOffset cutoff, DateTimeOffset cutoffDay, int batchSize, CancellationToken cancellationToken)
    {
        long total = 0;
        await using var command = connection.CreateCommand();
        command.CommandText = sql.Replace("{users}", string.Join(", ", users.Select((_, i) => "@u" + i.ToString(System.Globalization.CultureInfo.InvariantCulture))), StringComparison.Ordinal);
        command.CommandTimeout = 0;
        for (var i = 0; i < users.Count; i++)
        {
            Add(command, "u" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), users[i]);
        }

        Add(command, "cutoff", Time(cutoff));
        Add(command, "cutoff_day", Time(cutoffDay));
        Add(command, "batch", batchSize);
        int deleted;
        do
        {
            cancellationToken.ThrowIfCancellationRequested();
            deleted = sql switch
            {
                PostgresEventsSql => Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), System.Globalization.CultureInfo.InvariantCulture),
                SqliteEventsSql => await DeleteSqliteEventsAsync(connection, command, cancellationToken).ConfigureAwait(false),
                _ => await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false),
            };
            total += deleted;
        }
        while (deleted >= batchSize);

        return total;
    }

    /// <summary>SQLite: a batch of events and their idempotency keys, in one transaction.</summary>
    private static async Task<int> DeleteSqliteEventsAsync(DbConnection connection, DbCommand command, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        command.Transaction = transaction;
        var keys = new List<(object User, string Key)>();
        var deleted = 0;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                deleted++;
                if (!reader.IsDBNull(1))
                {
                    keys.Add((reader.GetValue(0), reader.GetString(1)));
                }
            }
        }

        await using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = "DELETE FROM usage_event_keys WHERE user_id = @user AND idempotency_key = @key";
            var user = delete.CreateParameter();
            user.ParameterName = "user";
            var key = delete.CreateParameter();
            key.ParameterName = "key";
            delete.Parameters.Add(user);
            delete.Parameters.Add(key);
            foreach (var (u, k) in keys)
            {
                (user.Value, key.Value) = (u, k);
                await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        command.Transaction = null;
        return deleted;
    }

    private object Time(DateTimeOffset value) => postgres ? value : UsageBillingSqliteConventions.ToUnixMicroseconds(value);

    private static void Add(DbCommand command, string name, object value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value;
        command.Parameters.Add(parameter);
    }
}

/// <summary>The prune's steps one at a time, for the storage benchmark (batched deletes against partition drops).</summary>
internal interface IUsageRetentionSteps
{
    /// <summary><see cref="IUsageRetentionStore.PruneAsync"/> with partition drops and the hourly fold each on or off.</summary>
    Task<UsagePruneResult> PruneAsync(DateTimeOffset cutoff, int batchSize, bool dropPartitions, bool foldHourly, CancellationToken cancellationToken);
}
