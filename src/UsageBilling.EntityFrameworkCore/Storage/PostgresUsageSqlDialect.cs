using System.Data.Common;
using Npgsql;
using NpgsqlTypes;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore.Storage;

/// <summary>PostgreSQL: one <c>INSERT … SELECT FROM unnest(arrays)</c> per batch, whatever its size.</summary>
internal sealed class PostgresUsageSqlDialect : IUsageSqlDialect
{
    private const string InsertSql = """
        INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, created_at)
        SELECT * FROM unnest(@ids, @users, @meters, @quantities, @occurred, @keys, @created)
        ON CONFLICT (user_id, idempotency_key) DO NOTHING
        RETURNING id
        """;

    private const string FindSql = """
        SELECT e.id, e.user_id, e.idempotency_key, e.meter, e.quantity, e.occurred_at
        FROM usage_events e
        JOIN unnest(@users, @keys) AS k(user_id, idempotency_key)
          ON e.user_id = k.user_id AND e.idempotency_key = k.idempotency_key
        """;

    private const string DailySql = """
        SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, SUM(quantity)::bigint, COUNT(*)
        FROM usage_events
        WHERE user_id = @user AND meter = @meter AND occurred_at >= @from AND occurred_at < @to
        GROUP BY 1 ORDER BY 1
        """;

    public int DefaultConcurrentBatches => 4;

    public async Task<HashSet<Guid>> InsertAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<NewUsageEvent> events, CancellationToken cancellationToken)
    {
        var n = events.Count;
        var ids = new Guid[n];
        var users = new Guid[n];
        var meters = new string[n];
        var quantities = new long[n];
        var occurred = new DateTimeOffset[n];
        var keys = new string?[n];
        var created = new DateTimeOffset[n];
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
        }

        await using var command = new NpgsqlCommand(InsertSql, (NpgsqlConnection)connection, (NpgsqlTransaction)transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = ids });
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = users });
        command.Parameters.Add(new NpgsqlParameter<string[]>("meters", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = meters });
        command.Parameters.Add(new NpgsqlParameter<long[]>("quantities", NpgsqlDbType.Array | NpgsqlDbType.Bigint) { TypedValue = quantities });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("occurred", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = occurred });
        command.Parameters.Add(new NpgsqlParameter<string?[]>("keys", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = keys });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]>("created", NpgsqlDbType.Array | NpgsqlDbType.TimestampTz) { TypedValue = created });
        var inserted = new HashSet<Guid>(n);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            inserted.Add(reader.GetGuid(0));
        }

        return inserted;
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
                StoredEventStatus.Existing, reader.GetGuid(0), reader.GetString(3), reader.GetInt64(4), reader.GetFieldValue<DateTimeOffset>(5));
        }

        return found;
    }

    public async Task<IReadOnlyList<DailyUsage>> DailyUsageAsync(DbConnection connection, Guid userId, string meter, DateTimeOffset from, DateTimeOffset to, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(DailySql, (NpgsqlConnection)connection);
        command.Parameters.Add(new NpgsqlParameter<Guid>("user", userId));
        command.Parameters.Add(new NpgsqlParameter<string>("meter", meter));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("from", from.ToUniversalTime()));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("to", to.ToUniversalTime()));
        var days = new List<DailyUsage>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            days.Add(new DailyUsage(reader.GetFieldValue<DateOnly>(0), reader.GetInt64(1), reader.GetInt64(2)));
        }

        return days;
    }

    public bool IsForeignKeyViolation(Exception exception) =>
        exception is PostgresException { SqlState: PostgresErrorCodes.ForeignKeyViolation };
}
