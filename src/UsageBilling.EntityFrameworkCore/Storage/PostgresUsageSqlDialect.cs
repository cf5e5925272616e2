using System.Data.Common;
using Npgsql;
using NpgsqlTypes;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>PostgreSQL: one <c>INSERT … SELECT FROM unnest(arrays)</c> per batch, whatever its size.</summary>
internal sealed class PostgresUsageSqlDialect : IUsageSqlDialect
{
    // The key is taken first (usage_event_keys holds its uniqueness: usage_events is partitioned by month, and a
    // partitioned table's unique index would have to include occurred_at); only events that got their key, or have
    // none, are inserted. A key taken by a concurrent uncommitted writer waits for it, as a unique index would.
    private const string InsertSql = """
        WITH input AS (
            SELECT * FROM unnest(@ids, @users, @meters, @quantities, @occurred, @keys, @created, @fingerprints)
                AS v(id, user_id, meter, quantity, occurred_at, idempotency_key, created_at, request_fingerprint)),
        taken AS (
            INSERT INTO usage_event_keys (user_id, idempotency_key, event_id, request_fingerprint)
            SELECT user_id, idempotency_key, id, request_fingerprint FROM input WHERE idempotency_key IS NOT NULL
            ON CONFLICT DO NOTHING
            RETURNING event_id)
        INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, created_at)
        SELECT i.id, i.user_id, i.meter, i.quantity, i.occurred_at, i.idempotency_key, i.created_at
        FROM input i
        WHERE i.idempotency_key IS NULL OR i.id IN (SELECT event_id FROM taken)
        RETURNING id
        """;

    private const string FindSql = """
        SELECT e.id, k.user_id, k.idempotency_key, e.meter, e.quantity, e.occurred_at, k.request_fingerprint
        FROM usage_event_keys k
        JOIN unnest(@users, @keys) AS x(user_id, idempotency_key)
          ON k.user_id = x.user_id AND k.idempotency_key = x.idempotency_key
        JOIN usage_events e ON e.id = k.event_id
        """;

    // Rows are fed in lock order (UsageRollup.LockOrder) and an INSERT processes them in input order,
    // so concurrent writers lock rollup rows in one global order and never deadlock.
    private static readonly string UpsertHourlySql = UpsertSql("usage_hourly", "hour");
    private static readonly string UpsertDailySql = UpsertSql("usage_daily", "day");

    // Primary-key range scans: usage_daily for the whole days (one row per meter and day), usage_hourly
    // for the whole hours of the ragged days, usage_events for the ragged hours — and for the whole hours of a
    // ragged day whose hours were folded (few events: its hourly rows are gone, its events are all there).
    private const string UsageByDaySql = """
        SELECT meter, (day AT TIME ZONE 'UTC')::date, quantity, event_count,
               quantity - reported_quantity, event_count - reported_count, last_reported_at
        FROM usage_daily
        WHERE user_id = @user AND day >= @days_from AND day < @days_to
        UNION ALL
        SELECT meter, (hour AT TIME ZONE 'UTC')::date, SUM(quantity)::bigint, SUM(event_count)::bigint,
               SUM(quantity - reported_quantity)::bigint, SUM(event_count - reported_count)::bigint, MAX(last_reported_at)
        FROM (
            SELECT meter, hour, quantity, event_count, reported_quantity, reported_count, last_reported_at FROM usage_hourly
            WHERE user_id = @user AND hour >= @hours_from AND hour < @days_from
            UNION ALL
            SELECT meter, hour, quantity, event_count, reported_quantity, reported_count, last_reported_at FROM usage_hourly
            WHERE user_id = @user AND hour >= @days_to AND hour < @hours_to
        ) h
        WHERE NOT EXISTS (SELECT 1 FROM usage_daily d WHERE d.user_id = @user AND d.day = date_trunc('day', h.hour, 'UTC') AND d.meter = h.meter AND d.hours_folded)
        GROUP BY 1, 2
        UNION ALL
        SELECT e.meter, (e.occurred_at AT TIME ZONE 'UTC')::date, SUM(e.quantity)::bigint, COUNT(*),
               COALESCE(SUM(e.quantity) FILTER (WHERE r.sent_at IS NULL), 0)::bigint, COUNT(*) FILTER (WHERE r.sent_at IS NULL), MAX(r.sent_at)
        FROM (
            SELECT meter, occurred_at, quantity, report_id FROM usage_events
            WHERE user_id = @user AND occurred_at >= @from AND occurred_at < @hours_from
            UNION ALL
            SELECT meter, occurred_at, quantity, report_id FROM usage_events
            WHERE user_id = @user AND occurred_at >= @hours_to AND occurred_at < @to
            UNION ALL
            SELECT f.meter, f.occurred_at, f.quantity, f.report_id
            FROM usage_daily d
            CROSS JOIN LATERAL (
                SELECT meter, occurred_at, quantity, report_id FROM usage_events
                WHERE user_id = @user AND occurred_at >= GREATEST(d.day, @hours_from) AND occurred_at < LEAST(d.day + interval '24 hours', @days_from) AND meter = d.meter
                UNION ALL
                SELECT meter, occurred_at, quantity, report_id FROM usage_events
                WHERE user_id = @user AND occurred_at >= GREATEST(d.day, @days_to) AND occurred_at < LEAST(d.day + interval '24 hours', @hours_to) AND meter = d.meter
            ) f
            WHERE d.user_id = @user AND d.hours_folded
              AND ((d.day >= date_trunc('day', @hours_from, 'UTC') AND d.day < @days_from) OR (d.day >= @days_to AND d.day < @hours_to))
        ) e
        LEFT JOIN usage_reports r ON r.id = e.report_id AND r.status = 'sent'
        GROUP BY 1, 2
        """;

    public int DefaultConcurrentBatches => 4;

    public async Task<HashSet<Guid>> InsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        await using var batch = new NpgsqlBatch((NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        batch.BatchCommands.Add(InsertCommand(events));
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await ReadIdsAsync(reader, events.Count, cancellationToken).ConfigureAwait(false);
    }

    private static async Task<HashSet<Guid>> ReadIdsAsync(DbDataReader reader, int capacity, CancellationToken cancellationToken)
    {
        var inserted = new HashSet<Guid>(capacity);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            inserted.Add(reader.GetGuid(0));
        }

        return inserted;
    }

    private static NpgsqlBatchCommand InsertCommand(IReadOnlyList<NewUsageEvent> events)
    {
        var n = events.Count;
        var ids = new Guid[n];
        var users = new Guid[n];
        var meters = new string[n];
        var quantities = new long[n];
        var occurred = new DateTimeOffset[n];
        var keys = new string?[n];
        var created = new DateTimeOffset[n];
        var fingerprints = new string?[n];
        for (var i = 0; i < n; i++)
        {
            var e = events[i];
            ids[i] = e.Id;
            users[i] = e.UserId;
            meters[i] = e.Meter;
            quantities[i] = e.Quantity;
            occurred[i] = e.OccurredAt;
            keys[i] = e.IdempotencyKey;
            created[i] = e.CreatedAt;
            fingerprints[i] = e.RequestFingerprint;
        }

        var command = new NpgsqlBatchCommand(InsertSql);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = ids });
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = users });
        command.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = meters });
        command.Parameters.Add(new NpgsqlParameter<long[]>("quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = quantities });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("occurred", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = occurred });
        command.Parameters.Add(new NpgsqlParameter<string?[]>("keys", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = keys });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("created", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = created });
        command.Parameters.Add(new NpgsqlParameter<string?[]>("fingerprints", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = fingerprints });
        return command;
    }

    public async Task<Dictionary<(Guid UserId, string Key), StoredEventOutcome>> FindByKeysAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid UserId, string Key)> keys, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(FindSql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. keys.Select(k => k.UserId)] });
        command.Parameters.Add(new NpgsqlParameter<string[]>("keys", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. keys.Select(k => k.Key)] });
        var found = new Dictionary<(Guid, string), StoredEventOutcome>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            found[(reader.GetGuid(1), reader.GetString(2))] = new StoredEventOutcome(
                StoredEventStatus.Existing, reader.GetGuid(0), reader.GetString(3), reader.GetInt64(4), reader.GetFieldValue<DateTimeOffset>(5), ExistingFingerprint: reader.IsDBNull(6) ? null : reader.GetString(6));
        }

        return found;
    }

    public async Task<BillingState?> BillingStateAsync(DbConnection connection, Guid userId, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(BillingStateQuery.Sql, (NpgsqlConnection)connection);
        command.Parameters.Add(new NpgsqlParameter<Guid>("user", userId));
        await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await BillingStateQuery.ReadAsync(reader, userId, static (r, i) => r.GetFieldValue<DateTimeOffset>(i), cancellationToken).ConfigureAwait(false);
    }

    public async Task UpsertRollupsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<RollupDelta> hourly, IReadOnlyList<RollupDelta> daily, CancellationToken cancellationToken)
    {
        if (hourly.Count == 0 && daily.Count == 0)
        {
            return;
        }

        // One round trip; the statements still run in order (hourly first), as the lock order requires.
        await using var batch = new NpgsqlBatch((NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        batch.BatchCommands.Add(UpsertCommand(UpsertHourlySql, hourly));
        batch.BatchCommands.Add(UpsertCommand(UpsertDailySql, daily));
        await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string UpsertSql(string table, string bucket) => $"""
        INSERT INTO {table} AS r (user_id, {bucket}, meter, quantity, event_count, reported_quantity, reported_count, last_reported_at)
        SELECT * FROM unnest(@users, @buckets, @meters, @quantities, @counts, @reported_quantities, @reported_counts, @reported_at)
        ON CONFLICT (user_id, {bucket}, meter) DO UPDATE SET
          quantity = r.quantity + excluded.quantity,
          event_count = r.event_count + excluded.event_count,
          reported_quantity = r.reported_quantity + excluded.reported_quantity,
          reported_count = r.reported_count + excluded.reported_count,
          last_reported_at = CASE WHEN r.reported_count + excluded.reported_count = 0 THEN NULL
                                  ELSE GREATEST(r.last_reported_at, excluded.last_reported_at) END
        """;

    private static NpgsqlBatchCommand UpsertCommand(string sql, IReadOnlyList<RollupDelta> deltas)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. deltas.Select(d => d.UserId)] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("buckets", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. deltas.Select(d => d.Bucket.ToUniversalTime())] });
        command.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. deltas.Select(d => d.Meter)] });
        command.Parameters.Add(new NpgsqlParameter<long[]>("quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. deltas.Select(d => d.Quantity)] });
        command.Parameters.Add(new NpgsqlParameter<long[]>("counts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. deltas.Select(d => d.Count)] });
        command.Parameters.Add(new NpgsqlParameter<long[]>("reported_quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. deltas.Select(d => d.ReportedQuantity)] });
        command.Parameters.Add(new NpgsqlParameter<long[]>("reported_counts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. deltas.Select(d => d.ReportedCount)] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?[]>("reported_at", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. deltas.Select(d => d.ReportedAt?.ToUniversalTime())] });
        return command;
    }

    public async Task<IReadOnlyList<MeterDayUsage>> UsageByDayAsync(DbConnection connection, Guid userId, RollupRanges ranges, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(UsageByDaySql, (NpgsqlConnection)connection);
        command.Parameters.Add(new NpgsqlParameter<Guid>("user", userId));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("from", ranges.From.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("hours_from", ranges.HoursFrom.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("days_from", ranges.DaysFrom.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("days_to", ranges.DaysTo.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("hours_to", ranges.HoursTo.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("to", ranges.To.ToUniversalTime()));

        // Every page view runs this: prepared once per pooled connection, planned once.
        await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<MeterDayUsage>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(new MeterDayUsage(
                reader.GetString(0),
                reader.GetFieldValue<DateOnly>(1),
                reader.GetInt64(2),
                reader.GetInt64(3),
                reader.GetInt64(4),
                reader.GetInt64(5),
                reader.IsDBNull(6) ? null : reader.GetFieldValue<DateTimeOffset>(6)));
        }

        return rows;
    }

    // Adds the batch's optimistic delta to every period total of the batch, in lock order (the input
    // order), creating missing rows: the upsert takes each row's lock and writes it once (a HOT update,
    // like the rollups). xmax = 0 marks the rows this statement created, which still need their seed.
    private const string IncrementTotalsSql = """
        INSERT INTO usage_period_totals AS t (user_id, meter, period_start, period_end, quantity, event_count)
        SELECT * FROM unnest(@users, @meters, @starts, @ends, @quantities, @counts)
        ON CONFLICT (user_id, meter, period_start) DO UPDATE SET quantity = t.quantity + excluded.quantity, event_count = t.event_count + excluded.event_count
        RETURNING user_id, meter, period_start, quantity, event_count, (xmax = 0)
        """;

    // The usage a new period row starts from: the events already stored in its period (an upgrade, or
    // enforcement turned on later), without this batch's own.
    private const string SeedTotalsSql = """
        SELECT k.user_id, k.meter, k.period_start,
               (SELECT COALESCE(SUM(e.quantity), 0) FROM usage_events e WHERE e.user_id = k.user_id AND e.occurred_at >= k.period_start AND e.occurred_at < k.period_end AND e.meter = k.meter AND e.id <> ALL(@batch))::bigint,
               (SELECT COUNT(*) FROM usage_events e WHERE e.user_id = k.user_id AND e.occurred_at >= k.period_start AND e.occurred_at < k.period_end AND e.meter = k.meter AND e.id <> ALL(@batch))
        FROM unnest(@users, @meters, @starts, @ends) AS k(user_id, meter, period_start, period_end)
        """;

    private const string UpdateTotalsSql = """
        UPDATE usage_period_totals AS t SET quantity = v.quantity, event_count = v.event_count
        FROM unnest(@users, @meters, @starts, @quantities, @counts) AS v(user_id, meter, period_start, quantity, event_count)
        WHERE t.user_id = v.user_id AND t.meter = v.meter AND t.period_start = v.period_start
        """;

    private const string InsertAlertsSql = """
        INSERT INTO usage_alerts (id, user_id, meter, period_start, period_end, threshold, used, amount, created_at, attempts, next_attempt_at)
        SELECT a.*, 0, a.created_at
        FROM unnest(@ids, @users, @meters, @starts, @ends, @thresholds, @used, @amounts, @created) AS a(id, user_id, meter, period_start, period_end, threshold, used, amount, created_at)
        ON CONFLICT (user_id, meter, period_start, threshold) DO NOTHING
        """;

    private const string AccountSettingsSql = """
        SELECT user_id, meter, spend_cap, quantity_cap, alert_thresholds FROM usage_account_limits WHERE user_id = ANY(@users)
        """;

    public async Task<Dictionary<Guid, AccountLimits>> AccountsAsync(DbConnection connection, DbTransaction? transaction, IReadOnlyCollection<Guid> users, CancellationToken cancellationToken)
    {
        await using var batch = new NpgsqlBatch((NpgsqlConnection)connection, (NpgsqlTransaction?)transaction);
        AddAccountCommands(batch, users);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        return await ReadAccountsAsync(reader, cancellationToken).ConfigureAwait(false);
    }

    // One round trip for the first half of a guarded batch: the accounts, the (predicted) period
    // totals incremented optimistically, and the insert; the statements run in this order. A second
    // one only when the batch opened new period rows, to seed them.
    public async Task<GuardRead> AccountsLockAndInsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyCollection<Guid> users, IReadOnlyList<(PeriodKey Key, DateTimeOffset End, PeriodTotals Delta)> keys, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        var stored = new Dictionary<PeriodKey, PeriodTotals>(keys.Count);
        var created = new List<(PeriodKey Key, DateTimeOffset End)>();
        Dictionary<Guid, AccountLimits> accounts;
        HashSet<Guid> inserted;
        await using (var batch = new NpgsqlBatch((NpgsqlConnection)connection, (NpgsqlTransaction)transaction))
        {
            AddAccountCommands(batch, users);
            var increment = new NpgsqlBatchCommand(IncrementTotalsSql);
            increment.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. keys.Select(k => k.Key.UserId)] });
            increment.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. keys.Select(k => k.Key.Meter)] });
            increment.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("starts", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. keys.Select(k => k.Key.PeriodStart.ToUniversalTime())] });
            increment.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("ends", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. keys.Select(k => k.End.ToUniversalTime())] });
            increment.Parameters.Add(new NpgsqlParameter<long[]>("quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. keys.Select(k => k.Delta.Quantity)] });
            increment.Parameters.Add(new NpgsqlParameter<long[]>("counts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. keys.Select(k => k.Delta.Count)] });
            batch.BatchCommands.Add(increment);
            batch.BatchCommands.Add(InsertCommand(events));
            await using var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            accounts = await ReadAccountsAsync(reader, cancellationToken).ConfigureAwait(false);
            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            var ends = keys.ToDictionary(k => k.Key, k => k.End);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                var key = new PeriodKey(reader.GetGuid(0), reader.GetString(1), reader.GetFieldValue<DateTimeOffset>(2));
                stored[key] = new PeriodTotals(reader.GetInt64(3), reader.GetInt64(4));
                if (reader.GetBoolean(5))
                {
                    created.Add((key, ends[key]));
                }
            }

            await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
            inserted = await ReadIdsAsync(reader, events.Count, cancellationToken).ConfigureAwait(false);
        }

        var before = new Dictionary<PeriodKey, PeriodTotals>(keys.Count);
        foreach (var (key, _, delta) in keys)
        {
            var now = stored[key];
            before[key] = new PeriodTotals(now.Quantity - delta.Quantity, now.Count - delta.Count);
        }

        if (created.Count > 0)
        {
            await using var seed = new NpgsqlCommand(SeedTotalsSql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
            seed.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. created.Select(k => k.Key.UserId)] });
            seed.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. created.Select(k => k.Key.Meter)] });
            seed.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("starts", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. created.Select(k => k.Key.PeriodStart.ToUniversalTime())] });
            seed.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("ends", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. created.Select(k => k.End.ToUniversalTime())] });
            seed.Parameters.Add(new NpgsqlParameter<Guid[]>("batch", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. events.Select(e => e.Id)] });
            await using var reader = await seed.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                before[new PeriodKey(reader.GetGuid(0), reader.GetString(1), reader.GetFieldValue<DateTimeOffset>(2))] = new PeriodTotals(reader.GetInt64(3), reader.GetInt64(4));
            }
        }

        return new GuardRead(accounts, before, stored, inserted);
    }

    private static void AddAccountCommands(NpgsqlBatch batch, IReadOnlyCollection<Guid> users)
    {
        var ids = users.ToArray();
        var states = new NpgsqlBatchCommand(BillingStateQuery.ManySql.Replace("@users", "ANY(@users)", StringComparison.Ordinal));
        states.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = ids });
        var settings = new NpgsqlBatchCommand(AccountSettingsSql);
        settings.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = ids });
        batch.BatchCommands.Add(states);
        batch.BatchCommands.Add(settings);
    }

    private static async Task<Dictionary<Guid, AccountLimits>> ReadAccountsAsync(DbDataReader reader, CancellationToken cancellationToken)
    {
        var result = await BillingStateQuery.ReadManyAsync(reader, static (r, i) => r.GetFieldValue<DateTimeOffset>(i), cancellationToken).ConfigureAwait(false);
        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        await BillingStateQuery.ReadSettingsAsync(reader, result, static (r, i) => r.GetDecimal(i), cancellationToken).ConfigureAwait(false);
        return BillingStateQuery.ToAccounts(result);
    }

    // One round trip: the rollups (hourly first, the lock order), the totals (already locked) and the alerts.
    public async Task WriteGuardedBatchAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<RollupDelta> hourly, IReadOnlyList<RollupDelta> daily, IReadOnlyList<(PeriodKey Key, PeriodTotals Totals)> totals, IReadOnlyList<NewUsageAlert> alerts, CancellationToken cancellationToken)
    {
        await using var batch = new NpgsqlBatch((NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        if (hourly.Count > 0 || daily.Count > 0)
        {
            batch.BatchCommands.Add(UpsertCommand(UpsertHourlySql, hourly));
            batch.BatchCommands.Add(UpsertCommand(UpsertDailySql, daily));
        }

        if (totals.Count > 0)
        {
            var update = new NpgsqlBatchCommand(UpdateTotalsSql);
            update.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. totals.Select(t => t.Key.UserId)] });
            update.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. totals.Select(t => t.Key.Meter)] });
            update.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("starts", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. totals.Select(t => t.Key.PeriodStart.ToUniversalTime())] });
            update.Parameters.Add(new NpgsqlParameter<long[]>("quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. totals.Select(t => t.Totals.Quantity)] });
            update.Parameters.Add(new NpgsqlParameter<long[]>("counts", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. totals.Select(t => t.Totals.Count)] });
            batch.BatchCommands.Add(update);
        }

        if (alerts.Count > 0)
        {
            var insert = new NpgsqlBatchCommand(InsertAlertsSql);
            insert.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. alerts.Select(a => a.Id)] });
            insert.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. alerts.Select(a => a.UserId)] });
            insert.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. alerts.Select(a => a.Meter)] });
            insert.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("starts", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. alerts.Select(a => a.PeriodStart.ToUniversalTime())] });
            insert.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("ends", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. alerts.Select(a => a.PeriodEnd.ToUniversalTime())] });
            insert.Parameters.Add(new NpgsqlParameter<string[]>("thresholds", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = [.. alerts.Select(a => a.Threshold.Key)] });
            insert.Parameters.Add(new NpgsqlParameter<long[]>("used", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = [.. alerts.Select(a => a.Used)] });
            insert.Parameters.Add(new NpgsqlParameter<decimal[]>("amounts", NpgsqlDbType.Array | NpgsqlDbType.Numeric) { TypedValue = [.. alerts.Select(a => a.Amount)] });
            insert.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("created", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. alerts.Select(a => a.CreatedAt.ToUniversalTime())] });
            batch.BatchCommands.Add(insert);
        }

        if (batch.BatchCommands.Count > 0)
        {
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public async Task DeleteEventsAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<(Guid Id, DateTimeOffset OccurredAt)> events, CancellationToken cancellationToken)
    {
        // occurred_at = ANY(…) lets PostgreSQL plan for (and lock) only the partitions the events are in.
        const string sql = """
            WITH gone AS (DELETE FROM usage_events WHERE id = ANY(@ids) AND occurred_at = ANY(@occurred) RETURNING id, user_id, idempotency_key)
            DELETE FROM usage_event_keys k USING gone g WHERE k.user_id = g.user_id AND k.idempotency_key = g.idempotency_key AND k.event_id = g.id
            """;
        await using var command = new NpgsqlCommand(sql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. events.Select(e => e.Id)] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("occurred", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = [.. events.Select(e => e.OccurredAt)] });
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    public bool IsForeignKeyViolation(Exception exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.ForeignKeyViolation };
}
