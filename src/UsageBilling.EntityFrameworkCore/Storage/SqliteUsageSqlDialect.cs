using System.Data.Common;
using System.Text;
using Microsoft.Data.Sqlite;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>
/// SQLite: multi-row <c>INSERT … VALUES (…),(…)</c> in chunks that stay under the parameter limit.
/// Guids are bound as upper-case TEXT and times as microseconds since the epoch, exactly as the
/// EF model stores them, so EF queries and raw inserts see the same values.
/// </summary>
internal sealed class SqliteUsageSqlDialect : IUsageSqlDialect
{
    // Microsoft.Data.Sqlite binds parameters by name, which costs more per parameter the more a
    // statement has: 32-row statements measured ~2x faster per row than 500-row ones (docs/benchmarks.md).
    private const int RowsPerStatement = 32;

    public int DefaultConcurrentBatches => 1;

    public async Task<HashSet<Guid>> InsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        // Keys first (usage_event_keys holds their uniqueness); an event whose key was taken already is not inserted.
        var taken = new HashSet<Guid>(events.Count);
        var keyed = events.Where(e => e.IdempotencyKey is not null).ToList();
        for (var offset = 0; offset < keyed.Count; offset += RowsPerStatement)
        {
            var count = Math.Min(RowsPerStatement, keyed.Count - offset);
            await using var command = ((SqliteConnection)connection).CreateCommand();
            command.Transaction = (SqliteTransaction)transaction;
            var sql = new StringBuilder("INSERT INTO usage_event_keys (user_id, idempotency_key, event_id, request_fingerprint) VALUES ");
            for (var i = 0; i < count; i++)
            {
                var e = keyed[offset + i];
                sql.Append(i > 0 ? "," : "").Append("($u").Append(i).Append(",$k").Append(i).Append(",$i").Append(i).Append(",$f").Append(i).Append(')');
                command.Parameters.Add(new SqliteParameter("$u" + i, SqliteType.Text) { Value = GuidText(e.UserId) });
                command.Parameters.Add(new SqliteParameter("$k" + i, SqliteType.Text) { Value = e.IdempotencyKey });
                command.Parameters.Add(new SqliteParameter("$i" + i, SqliteType.Text) { Value = GuidText(e.Id) });
                command.Parameters.Add(new SqliteParameter("$f" + i, SqliteType.Text) { Value = (object?)e.RequestFingerprint ?? DBNull.Value });
            }

            sql.Append(" ON CONFLICT DO NOTHING RETURNING event_id");
            command.CommandText = sql.ToString();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                taken.Add(Guid.Parse(reader.GetString(0)));
            }
        }

        var rows = events.Where(e => e.IdempotencyKey is null || taken.Contains(e.Id)).ToList();
        var inserted = new HashSet<Guid>(rows.Count);
        for (var offset = 0; offset < rows.Count; offset += RowsPerStatement)
        {
            var count = Math.Min(RowsPerStatement, rows.Count - offset);
            await using var command = ((SqliteConnection)connection).CreateCommand();
            command.Transaction = (SqliteTransaction)transaction;
            var sql = new StringBuilder("INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, created_at) VALUES ");
            for (var i = 0; i < count; i++)
            {
                var e = rows[offset + i];
                if (i > 0)
                {
                    sql.Append(',');
                }

                sql.Append("($i").Append(i).Append(",$u").Append(i).Append(",$m").Append(i).Append(",$q").Append(i)
                    .Append(",$o").Append(i).Append(",$k").Append(i).Append(",$c").Append(i).Append(')');
                command.Parameters.Add(new SqliteParameter("$i" + i, SqliteType.Text) { Value = GuidText(e.Id) });
                command.Parameters.Add(new SqliteParameter("$u" + i, SqliteType.Text) { Value = GuidText(e.UserId) });
                command.Parameters.Add(new SqliteParameter("$m" + i, SqliteType.Text) { Value = e.Meter });
                command.Parameters.Add(new SqliteParameter("$q" + i, SqliteType.Integer) { Value = e.Quantity });
                command.Parameters.Add(new SqliteParameter("$o" + i, SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(e.OccurredAt) });
                command.Parameters.Add(new SqliteParameter("$k" + i, SqliteType.Text) { Value = (object?)e.IdempotencyKey ?? DBNull.Value });
                command.Parameters.Add(new SqliteParameter("$c" + i, SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(e.CreatedAt) });
            }

            sql.Append(" RETURNING id");
            command.CommandText = sql.ToString();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                inserted.Add(Guid.Parse(reader.GetString(0)));
            }
        }

        return inserted;
    }

    public async Task<Dictionary<(Guid UserId, string Key), StoredEventOutcome>> FindByKeysAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid UserId, string Key)> keys, CancellationToken cancellationToken)
    {
        var found = new Dictionary<(Guid, string), StoredEventOutcome>();
        for (var offset = 0; offset < keys.Count; offset += RowsPerStatement)
        {
            var count = Math.Min(RowsPerStatement, keys.Count - offset);
            await using var command = ((SqliteConnection)connection).CreateCommand();
            command.Transaction = (SqliteTransaction)transaction;
            var sql = new StringBuilder("SELECT e.id, k.user_id, k.idempotency_key, e.meter, e.quantity, e.occurred_at, k.request_fingerprint FROM usage_event_keys k JOIN usage_events e ON e.id = k.event_id WHERE ");
            for (var i = 0; i < count; i++)
            {
                if (i > 0)
                {
                    sql.Append(" OR ");
                }

                sql.Append("(k.user_id = $u").Append(i).Append(" AND k.idempotency_key = $k").Append(i).Append(')');
                command.Parameters.Add(new SqliteParameter("$u" + i, SqliteType.Text) { Value = GuidText(keys[offset + i].UserId) });
                command.Parameters.Add(new SqliteParameter("$k" + i, SqliteType.Text) { Value = keys[offset + i].Key });
            }

            command.CommandText = sql.ToString();
            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                found[(Guid.Parse(reader.GetString(1)), reader.GetString(2))] = new StoredEventOutcome(
                    StoredEventStatus.Existing,
                    Guid.Parse(reader.GetString(0)),
                    reader.GetString(3),
                    reader.GetInt64(4),
                    UsageBillingSqliteConventions.FromUnixMicroseconds(reader.GetInt64(5)),
                    ExistingFingerprint: reader.IsDBNull(6) ? null : reader.GetString(6));
            }
        }

        return found;
    }

    public async Task<BillingState?> BillingStateAsync(DbConnection connection, Guid userId, CancellationToken cancellationToken)
    {
        await using var command = ((SqliteConnection)connection).CreateCommand();
        command.CommandText = BillingStateQuery.Sql;
        command.Parameters.Add(new SqliteParameter("@user", SqliteType.Text) { Value = GuidText(userId) });
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await BillingStateQuery.ReadAsync(reader, userId, static (r, i) => UsageBillingSqliteConventions.FromUnixMicroseconds(r.GetInt64(i)), cancellationToken).ConfigureAwait(false);
    }

    public async Task UpsertRollupsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<RollupDelta> hourly, IReadOnlyList<RollupDelta> daily, CancellationToken cancellationToken)
    {
        await UpsertAsync(connection, transaction, "usage_hourly", "hour", hourly, cancellationToken).ConfigureAwait(false);
        await UpsertAsync(connection, transaction, "usage_daily", "day", daily, cancellationToken).ConfigureAwait(false);
    }

    // One prepared single-row statement re-run per row: SQLite runs in-process, so a re-run costs
    // microseconds, while a multi-row statement pays per-parameter name binding (see RowsPerStatement).
    private static async Task UpsertAsync(DbConnection connection, DbTransaction transaction, string table, string bucket, IReadOnlyList<RollupDelta> deltas, CancellationToken cancellationToken)
    {
        if (deltas.Count == 0)
        {
            return;
        }

        await using var command = ((SqliteConnection)connection).CreateCommand();
        command.Transaction = (SqliteTransaction)transaction;

        // SQLite's two-argument max() is NULL when either side is; the coalesces keep the known one. A bucket left with
        // nothing acknowledged (a void, a withdrawn report) has no acknowledgement time either.
        command.CommandText = $"""
            INSERT INTO {table} (user_id, {bucket}, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
            VALUES ($u, $b, $m, $q, $c, $rq, $rc, $at)
            ON CONFLICT (user_id, {bucket}, meter) DO UPDATE SET
              quantity = quantity + excluded.quantity,
              event_count = event_count + excluded.event_count,
              reported_quantity = reported_quantity + excluded.reported_quantity,
              reported_count = reported_count + excluded.reported_count,
              last_reported_at = CASE WHEN reported_count + excluded.reported_count = 0 THEN NULL
                                      ELSE max(coalesce(last_reported_at, excluded.last_reported_at), coalesce(excluded.last_reported_at, last_reported_at)) END
            """;
        var user = command.Parameters.Add("$u", SqliteType.Text);
        var bucketStart = command.Parameters.Add("$b", SqliteType.Integer);
        var meter = command.Parameters.Add("$m", SqliteType.Text);
        var quantity = command.Parameters.Add("$q", SqliteType.Integer);
        var count = command.Parameters.Add("$c", SqliteType.Integer);
        var reportedQuantity = command.Parameters.Add("$rq", SqliteType.Integer);
        var reportedCount = command.Parameters.Add("$rc", SqliteType.Integer);
        var reportedAt = command.Parameters.Add("$at", SqliteType.Integer);
        await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
        foreach (var d in deltas)
        {
            user.Value = GuidText(d.UserId);
            bucketStart.Value = UsageBillingSqliteConventions.ToUnixMicroseconds(d.Bucket);
            meter.Value = d.Meter;
            quantity.Value = d.Quantity;
            count.Value = d.Count;
            reportedQuantity.Value = d.ReportedQuantity;
            reportedCount.Value = d.ReportedCount;
            reportedAt.Value = d.ReportedAt is { } at ? UsageBillingSqliteConventions.ToUnixMicroseconds(at) : DBNull.Value;
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async Task<IReadOnlyList<MeterDayUsage>> UsageByDayAsync(DbConnection connection, Guid userId, RollupRanges ranges, CancellationToken cancellationToken)
    {
        await using var command = ((SqliteConnection)connection).CreateCommand();
        command.CommandText = """
            SELECT meter, day / 86400000000, quantity, event_count,
                   quantity - reported_quantity, event_count - reported_count, last_reported_at
            FROM usage_daily
            WHERE user_id = $user AND day >= $daysFrom AND day < $daysTo
            UNION ALL
            SELECT meter, hour / 86400000000, SUM(quantity), SUM(event_count),
                   SUM(quantity - reported_quantity), SUM(event_count - reported_count), MAX(last_reported_at)
            FROM usage_hourly h
            WHERE user_id = $user AND ((hour >= $hoursFrom AND hour < $daysFrom) OR (hour >= $daysTo AND hour < $hoursTo))
              AND NOT EXISTS (SELECT 1 FROM usage_daily d WHERE d.user_id = $user AND d.day = h.hour - h.hour % 86400000000 AND d.meter = h.meter AND d.hours_folded)
            GROUP BY 1, 2
            UNION ALL
            SELECT e.meter, e.occurred_at / 86400000000, SUM(e.quantity), COUNT(*),
                   SUM(CASE WHEN r.sent_at IS NULL THEN e.quantity ELSE 0 END), SUM(r.sent_at IS NULL), MAX(r.sent_at)
            FROM usage_events e
            LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
            WHERE e.user_id = $user AND ((e.occurred_at >= $from AND e.occurred_at < $hoursFrom) OR (e.occurred_at >= $hoursTo AND e.occurred_at < $to))
            GROUP BY 1, 2
            UNION ALL
            SELECT e.meter, e.occurred_at / 86400000000, SUM(e.quantity), COUNT(*),
                   SUM(CASE WHEN r.sent_at IS NULL THEN e.quantity ELSE 0 END), SUM(r.sent_at IS NULL), MAX(r.sent_at)
            FROM usage_daily d
            JOIN usage_events e ON e.user_id = $user AND e.meter = d.meter AND e.occurred_at >= d.day AND e.occurred_at < d.day + 86400000000
            LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
            WHERE d.user_id = $user AND d.hours_folded
              AND ((d.day >= $hoursFrom - $hoursFrom % 86400000000 AND d.day < $daysFrom) OR (d.day >= $daysTo AND d.day < $hoursTo))
              AND ((e.occurred_at >= $hoursFrom AND e.occurred_at < $daysFrom) OR (e.occurred_at >= $daysTo AND e.occurred_at < $hoursTo))
            GROUP BY 1, 2
            """;
        command.Parameters.Add(new SqliteParameter("$user", SqliteType.Text) { Value = GuidText(userId) });
        command.Parameters.Add(new SqliteParameter("$from", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(ranges.From) });
        command.Parameters.Add(new SqliteParameter("$hoursFrom", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(ranges.HoursFrom) });
        command.Parameters.Add(new SqliteParameter("$daysFrom", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(ranges.DaysFrom) });
        command.Parameters.Add(new SqliteParameter("$daysTo", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(ranges.DaysTo) });
        command.Parameters.Add(new SqliteParameter("$hoursTo", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(ranges.HoursTo) });
        command.Parameters.Add(new SqliteParameter("$to", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(ranges.To) });
        var rows = new List<MeterDayUsage>();
        var epochDay = DateOnly.FromDateTime(DateTime.UnixEpoch).DayNumber;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(new MeterDayUsage(
                reader.GetString(0),
                DateOnly.FromDayNumber(epochDay + (int)reader.GetInt64(1)),
                reader.GetInt64(2),
                reader.GetInt64(3),
                reader.GetInt64(4),
                reader.GetInt64(5),
                reader.IsDBNull(6) ? null : UsageBillingSqliteConventions.FromUnixMicroseconds(reader.GetInt64(6))));
        }

        return rows;
    }

    public async Task<Dictionary<Guid, AccountLimits>> AccountsAsync(DbConnection connection, DbTransaction? transaction, IReadOnlyCollection<Guid> users, CancellationToken cancellationToken)
    {
        var rows = new Dictionary<Guid, BillingStateQuery.AccountRows>();
        var all = users.ToList();
        for (var offset = 0; offset < all.Count; offset += RowsPerStatement)
        {
            var chunk = all.GetRange(offset, Math.Min(RowsPerStatement, all.Count - offset));
            var list = string.Join(',', chunk.Select((_, i) => "$u" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            await using var command = ((SqliteConnection)connection).CreateCommand();
            command.Transaction = (SqliteTransaction?)transaction;
            command.CommandText = BillingStateQuery.ManySql.Replace("= @users", $"IN ({list})", StringComparison.Ordinal) + ";\n" +
                $"SELECT user_id, meter, spend_cap, quantity_cap, alert_thresholds FROM usage_account_limits WHERE user_id IN ({list});";
            for (var i = 0; i < chunk.Count; i++)
            {
                command.Parameters.Add(new SqliteParameter("$u" + i, SqliteType.Text) { Value = GuidText(chunk[i]) });
            }

            await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await BillingStateQuery.ReadManyAsync(reader, ReadTime, cancellationToken, ReadGuid, rows).ConfigureAwait(false);
            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            await BillingStateQuery.ReadSettingsAsync(reader, rows, static (r, i) => decimal.Parse(r.GetString(i), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture), cancellationToken, ReadGuid).ConfigureAwait(false);
        }

        return BillingStateQuery.ToAccounts(rows);
    }

    // The recording transaction is BEGIN IMMEDIATE (Microsoft.Data.Sqlite's default): it holds the
    // database's one write lock from its start, so these reads and the writes after them are one
    // atomic step across every process on the file.
    private static async Task<Dictionary<PeriodKey, PeriodTotals>> LockTotalsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(PeriodKey Key, DateTimeOffset End, PeriodTotals Delta)> keys, CancellationToken cancellationToken)
    {
        var totals = new Dictionary<PeriodKey, PeriodTotals>(keys.Count);
        await using var read = ((SqliteConnection)connection).CreateCommand();
        read.Transaction = (SqliteTransaction)transaction;
        read.CommandText = "SELECT quantity, event_count FROM usage_period_totals WHERE user_id = $u AND meter = $m AND period_start = $s";
        var ru = read.Parameters.Add("$u", SqliteType.Text);
        var rm = read.Parameters.Add("$m", SqliteType.Text);
        var rs = read.Parameters.Add("$s", SqliteType.Integer);
        await using var seed = ((SqliteConnection)connection).CreateCommand();
        seed.Transaction = (SqliteTransaction)transaction;
        seed.CommandText = """
            INSERT INTO usage_period_totals (user_id, meter, period_start, period_end, quantity, event_count)
            SELECT $u, $m, $s, $e, COALESCE(SUM(quantity), 0), COUNT(*)
            FROM usage_events WHERE user_id = $u AND occurred_at >= $s AND occurred_at < $e AND meter = $m
            RETURNING quantity, event_count
            """;
        var su = seed.Parameters.Add("$u", SqliteType.Text);
        var sm = seed.Parameters.Add("$m", SqliteType.Text);
        var ss = seed.Parameters.Add("$s", SqliteType.Integer);
        var se = seed.Parameters.Add("$e", SqliteType.Integer);
        foreach (var (key, end, _) in keys)
        {
            ru.Value = su.Value = GuidText(key.UserId);
            rm.Value = sm.Value = key.Meter;
            rs.Value = ss.Value = UsageBillingSqliteConventions.ToUnixMicroseconds(key.PeriodStart);
            se.Value = UsageBillingSqliteConventions.ToUnixMicroseconds(end);
            PeriodTotals? found = null;
            await using (var reader = await read.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false))
            {
                if (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    found = new PeriodTotals(reader.GetInt64(0), reader.GetInt64(1));
                }
            }

            if (found is null)
            {
                await using var reader = await seed.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                found = new PeriodTotals(reader.GetInt64(0), reader.GetInt64(1));
            }

            totals[key] = found.Value;
        }

        return totals;
    }

    // SQLite runs in-process: a "round trip" costs microseconds, so the steps simply run in order.
    public async Task<GuardRead> AccountsLockAndInsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyCollection<Guid> users, IReadOnlyList<(PeriodKey Key, DateTimeOffset End, PeriodTotals Delta)> keys, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        var accounts = await AccountsAsync(connection, transaction, users, cancellationToken).ConfigureAwait(false);
        var totals = await LockTotalsAsync(connection, transaction, keys, cancellationToken).ConfigureAwait(false);
        var inserted = await InsertAsync(connection, transaction, events, cancellationToken).ConfigureAwait(false);
        return new GuardRead(accounts, totals, totals, inserted);
    }

    public async Task WriteGuardedBatchAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<RollupDelta> hourly, IReadOnlyList<RollupDelta> daily, IReadOnlyList<(PeriodKey Key, PeriodTotals Totals)> totals, IReadOnlyList<NewUsageAlert> alerts, CancellationToken cancellationToken)
    {
        await UpsertRollupsAsync(connection, transaction, hourly, daily, cancellationToken).ConfigureAwait(false);
        await WriteGuardResultAsync(connection, transaction, totals, alerts, cancellationToken).ConfigureAwait(false);
    }

    private static async Task WriteGuardResultAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(PeriodKey Key, PeriodTotals Totals)> totals, IReadOnlyList<NewUsageAlert> alerts, CancellationToken cancellationToken)
    {
        if (totals.Count > 0)
        {
            await using var update = ((SqliteConnection)connection).CreateCommand();
            update.Transaction = (SqliteTransaction)transaction;
            update.CommandText = "UPDATE usage_period_totals SET quantity = $q, event_count = $c WHERE user_id = $u AND meter = $m AND period_start = $s";
            var u = update.Parameters.Add("$u", SqliteType.Text);
            var m = update.Parameters.Add("$m", SqliteType.Text);
            var st = update.Parameters.Add("$s", SqliteType.Integer);
            var q = update.Parameters.Add("$q", SqliteType.Integer);
            var c = update.Parameters.Add("$c", SqliteType.Integer);
            await update.PrepareAsync(cancellationToken).ConfigureAwait(false);
            foreach (var (key, value) in totals)
            {
                u.Value = GuidText(key.UserId);
                m.Value = key.Meter;
                st.Value = UsageBillingSqliteConventions.ToUnixMicroseconds(key.PeriodStart);
                q.Value = value.Quantity;
                c.Value = value.Count;
                await update.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        if (alerts.Count > 0)
        {
            await using var insert = ((SqliteConnection)connection).CreateCommand();
            insert.Transaction = (SqliteTransaction)transaction;
            insert.CommandText = """
                INSERT INTO usage_alerts (id, user_id, meter, period_start, period_end, threshold, used, amount, created_at, attempts, next_attempt_at)
                VALUES ($id, $u, $m, $s, $e, $t, $used, $amount, $at, 0, $at)
                ON CONFLICT (user_id, meter, period_start, threshold) DO NOTHING
                """;
            foreach (var a in alerts)
            {
                insert.Parameters.Clear();
                insert.Parameters.Add(new SqliteParameter("$id", SqliteType.Text) { Value = GuidText(a.Id) });
                insert.Parameters.Add(new SqliteParameter("$u", SqliteType.Text) { Value = GuidText(a.UserId) });
                insert.Parameters.Add(new SqliteParameter("$m", SqliteType.Text) { Value = a.Meter });
                insert.Parameters.Add(new SqliteParameter("$s", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(a.PeriodStart) });
                insert.Parameters.Add(new SqliteParameter("$e", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(a.PeriodEnd) });
                insert.Parameters.Add(new SqliteParameter("$t", SqliteType.Text) { Value = a.Threshold.Key });
                insert.Parameters.Add(new SqliteParameter("$used", SqliteType.Integer) { Value = a.Used });

                // EF Core's SQLite form of a decimal: invariant TEXT.
                insert.Parameters.Add(new SqliteParameter("$amount", SqliteType.Text) { Value = a.Amount.ToString("0.0###########################", System.Globalization.CultureInfo.InvariantCulture) });
                insert.Parameters.Add(new SqliteParameter("$at", SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(a.CreatedAt) });
                await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    public async Task DeleteEventsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid Id, DateTimeOffset OccurredAt)> events, CancellationToken cancellationToken)
    {
        await using var delete = ((SqliteConnection)connection).CreateCommand();
        delete.Transaction = (SqliteTransaction)transaction;
        delete.CommandText = "DELETE FROM usage_event_keys WHERE event_id = $id AND (user_id, idempotency_key) IN (SELECT user_id, idempotency_key FROM usage_events WHERE id = $id); DELETE FROM usage_events WHERE id = $id";
        var id = delete.Parameters.Add("$id", SqliteType.Text);
        foreach (var (value, _) in events)
        {
            id.Value = GuidText(value);
            await delete.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static DateTimeOffset ReadTime(DbDataReader reader, int ordinal) => UsageBillingSqliteConventions.FromUnixMicroseconds(reader.GetInt64(ordinal));

    private static Guid ReadGuid(DbDataReader reader, int ordinal) => Guid.Parse(reader.GetString(ordinal));

    public bool IsForeignKeyViolation(Exception exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 787 };

    /// <summary>EF Core's SQLite form of a Guid: upper-case TEXT.</summary>
    internal static string GuidText(Guid value) => value.ToString().ToUpperInvariant();
}
