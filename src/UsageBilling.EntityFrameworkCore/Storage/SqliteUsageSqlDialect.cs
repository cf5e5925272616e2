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
        var inserted = new HashSet<Guid>(events.Count);
        for (var offset = 0; offset < events.Count; offset += RowsPerStatement)
        {
            var count = Math.Min(RowsPerStatement, events.Count - offset);
            await using var command = ((SqliteConnection)connection).CreateCommand();
            command.Transaction = (SqliteTransaction)transaction;
            var sql = new StringBuilder("INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, created_at) VALUES ");
            for (var i = 0; i < count; i++)
            {
                var e = events[offset + i];
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

            sql.Append(" ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id");
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
            var sql = new StringBuilder("SELECT id, user_id, idempotency_key, meter, quantity, occurred_at FROM usage_events WHERE ");
            for (var i = 0; i < count; i++)
            {
                if (i > 0)
                {
                    sql.Append(" OR ");
                }

                sql.Append("(user_id = $u").Append(i).Append(" AND idempotency_key = $k").Append(i).Append(')');
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
                    UsageBillingSqliteConventions.FromUnixMicroseconds(reader.GetInt64(5)));
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

        // SQLite's two-argument max() is NULL when either side is; the coalesces keep the known one.
        command.CommandText = $"""
            INSERT INTO {table} (user_id, {bucket}, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
            VALUES ($u, $b, $m, $q, $c, $rq, $rc, $at)
            ON CONFLICT (user_id, {bucket}, meter) DO UPDATE SET
              quantity = quantity + excluded.quantity,
              event_count = event_count + excluded.event_count,
              reported_quantity = reported_quantity + excluded.reported_quantity,
              reported_count = reported_count + excluded.reported_count,
              last_reported_at = max(coalesce(last_reported_at, excluded.last_reported_at), coalesce(excluded.last_reported_at, last_reported_at))
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
            FROM usage_hourly
            WHERE user_id = $user AND ((hour >= $hoursFrom AND hour < $daysFrom) OR (hour >= $daysTo AND hour < $hoursTo))
            GROUP BY 1, 2
            UNION ALL
            SELECT meter, occurred_at / 86400000000, SUM(quantity), COUNT(*),
                   SUM(CASE WHEN reported_at IS NULL THEN quantity ELSE 0 END), SUM(reported_at IS NULL), MAX(reported_at)
            FROM usage_events
            WHERE user_id = $user AND ((occurred_at >= $from AND occurred_at < $hoursFrom) OR (occurred_at >= $hoursTo AND occurred_at < $to))
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

    public bool IsForeignKeyViolation(Exception exception) =>
        exception is SqliteException { SqliteErrorCode: 19, SqliteExtendedErrorCode: 787 };

    /// <summary>EF Core's SQLite form of a Guid: upper-case TEXT.</summary>
    internal static string GuidText(Guid value) => value.ToString().ToUpperInvariant();
}
