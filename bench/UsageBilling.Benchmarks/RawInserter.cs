using System.Globalization;
using System.Text;
using Microsoft.Data.Sqlite;
using Npgsql;
using NpgsqlTypes;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.Benchmarks;

/// <summary>One row of <c>usage_events</c> as the raw inserter writes it.</summary>
internal sealed record RawRow(Guid Id, Guid UserId, string Meter, long Quantity, DateTimeOffset OccurredAt, string? IdempotencyKey, DateTimeOffset CreatedAt);

/// <summary>
/// The practical upper bound: the driver alone (no EF, no recorder), one connection, one
/// transaction per batch, same durability as the library (SQLite WAL + synchronous=FULL;
/// PostgreSQL's default synchronous_commit=on).
/// </summary>
internal abstract class RawInserter : IAsyncDisposable
{
    protected const string Columns = "INSERT INTO usage_events (id, user_id, meter, quantity, occurred_at, idempotency_key, created_at) ";

    public static RawInserter Open(BenchDatabase db, string sql, int rowsPerStatement) =>
        db.Provider == BenchProvider.Sqlite ? new Sqlite(db.ConnectionString, rowsPerStatement) : new Postgres(db.ConnectionString, sql == "unnest");

    public abstract Task InsertAsync(IReadOnlyList<RawRow> rows);

    public abstract ValueTask DisposeAsync();

    private sealed class Sqlite : RawInserter
    {
        private readonly SqliteConnection _connection;
        private readonly int _rowsPerStatement;

        public Sqlite(string connectionString, int rowsPerStatement)
        {
            _rowsPerStatement = rowsPerStatement;
            _connection = new SqliteConnection(connectionString);
            _connection.Open();
            using var pragmas = _connection.CreateCommand();
            pragmas.CommandText = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000;";
            pragmas.ExecuteNonQuery();
            using var check = _connection.CreateCommand();
            check.CommandText = "PRAGMA synchronous";
            if (Convert.ToInt64(check.ExecuteScalar(), CultureInfo.InvariantCulture) != 2)
            {
                throw new InvalidOperationException("SQLite did not accept synchronous=FULL.");
            }
        }

        public override async Task InsertAsync(IReadOnlyList<RawRow> rows)
        {
            // Microsoft.Data.Sqlite binds parameters by name (a linear lookup each), so one huge
            // statement is quadratic; a transaction of moderate multi-row statements is the fast path.
            await using var transaction = (SqliteTransaction)await _connection.BeginTransactionAsync().ConfigureAwait(false);
            var inserted = 0;
            for (var offset = 0; offset < rows.Count; offset += _rowsPerStatement)
            {
                var count = Math.Min(_rowsPerStatement, rows.Count - offset);
                await using var command = _connection.CreateCommand();
                command.Transaction = transaction;
                var sql = new StringBuilder(Columns).Append("VALUES ");
                for (var i = 0; i < count; i++)
                {
                    var r = rows[offset + i];
                    sql.Append(i == 0 ? "(" : ",(").Append(CultureInfo.InvariantCulture, $"$i{i},$u{i},$m{i},$q{i},$o{i},$k{i},$c{i})");
                    command.Parameters.Add(new SqliteParameter("$i" + i, SqliteType.Text) { Value = r.Id.ToString().ToUpperInvariant() });
                    command.Parameters.Add(new SqliteParameter("$u" + i, SqliteType.Text) { Value = r.UserId.ToString().ToUpperInvariant() });
                    command.Parameters.Add(new SqliteParameter("$m" + i, SqliteType.Text) { Value = r.Meter });
                    command.Parameters.Add(new SqliteParameter("$q" + i, SqliteType.Integer) { Value = r.Quantity });
                    command.Parameters.Add(new SqliteParameter("$o" + i, SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(r.OccurredAt) });
                    command.Parameters.Add(new SqliteParameter("$k" + i, SqliteType.Text) { Value = (object?)r.IdempotencyKey ?? DBNull.Value });
                    command.Parameters.Add(new SqliteParameter("$c" + i, SqliteType.Integer) { Value = UsageBillingSqliteConventions.ToUnixMicroseconds(r.CreatedAt) });
                }

                command.CommandText = sql.ToString();
                inserted += await command.ExecuteNonQueryAsync().ConfigureAwait(false);
            }

            if (inserted != rows.Count)
            {
                throw new InvalidOperationException($"Raw SQLite insert wrote {inserted} of {rows.Count} rows.");
            }

            await transaction.CommitAsync().ConfigureAwait(false);
        }

        public override ValueTask DisposeAsync() => _connection.DisposeAsync();
    }

    private sealed class Postgres : RawInserter
    {
        private readonly NpgsqlConnection _connection;
        private readonly bool _unnest;

        public Postgres(string connectionString, bool unnest)
        {
            _connection = new NpgsqlConnection(connectionString);
            _connection.Open();
            _unnest = unnest;
            using var check = new NpgsqlCommand("SHOW synchronous_commit", _connection);
            if ((string?)check.ExecuteScalar() is not ("on" or "remote_apply" or "remote_write"))
            {
                throw new InvalidOperationException("PostgreSQL runs with synchronous_commit off or local: commits would not be durable.");
            }
        }

        public override async Task InsertAsync(IReadOnlyList<RawRow> rows)
        {
            await using var transaction = await _connection.BeginTransactionAsync().ConfigureAwait(false);
            await using var command = _unnest ? Unnest(rows) : Values(rows);
            command.Connection = _connection;
            command.Transaction = transaction;
            var inserted = await command.ExecuteNonQueryAsync().ConfigureAwait(false);
            if (inserted != rows.Count)
            {
                throw new InvalidOperationException($"Raw PostgreSQL insert wrote {inserted} of {rows.Count} rows.");
            }

            await transaction.CommitAsync().ConfigureAwait(false);
        }

        private static NpgsqlCommand Values(IReadOnlyList<RawRow> rows)
        {
            var command = new NpgsqlCommand();
            var sql = new StringBuilder(Columns).Append("VALUES ");
            for (var i = 0; i < rows.Count; i++)
            {
                var r = rows[i];
                var p = i * 7;
                sql.Append(i == 0 ? "(" : ",(").Append(CultureInfo.InvariantCulture, $"${p + 1},${p + 2},${p + 3},${p + 4},${p + 5},${p + 6},${p + 7})");
                command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = r.Id });
                command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = r.UserId });
                command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = r.Meter });
                command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = r.Quantity });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = r.OccurredAt });
                command.Parameters.Add(r.IdempotencyKey is { } key ? new NpgsqlParameter<string> { TypedValue = key } : new NpgsqlParameter { NpgsqlDbType = NpgsqlDbType.Text, Value = DBNull.Value });
                command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = r.CreatedAt });
            }

            command.CommandText = sql.ToString();
            return command;
        }

        private static NpgsqlCommand Unnest(IReadOnlyList<RawRow> rows)
        {
            var command = new NpgsqlCommand(Columns + "SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7)");
            command.Parameters.Add(new NpgsqlParameter<Guid[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, TypedValue = [.. rows.Select(r => r.Id)] });
            command.Parameters.Add(new NpgsqlParameter<Guid[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, TypedValue = [.. rows.Select(r => r.UserId)] });
            command.Parameters.Add(new NpgsqlParameter<string[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, TypedValue = [.. rows.Select(r => r.Meter)] });
            command.Parameters.Add(new NpgsqlParameter<long[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint, TypedValue = [.. rows.Select(r => r.Quantity)] });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, TypedValue = [.. rows.Select(r => r.OccurredAt)] });
            command.Parameters.Add(new NpgsqlParameter<string?[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, TypedValue = [.. rows.Select(r => r.IdempotencyKey)] });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]> { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz, TypedValue = [.. rows.Select(r => r.CreatedAt)] });
            return command;
        }

        public override ValueTask DisposeAsync() => _connection.DisposeAsync();
    }
}
