using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore;

namespace UsageBilling.Testing;

/// <summary>The CLI tests seed the database through the library's built-in context.</summary>
public sealed partial class TestDatabase
{
    public UsageBillingDbContext CreateContext() => Provider == Provider.Sqlite
        ? new SqliteUsageBillingDbContext(new DbContextOptionsBuilder<SqliteUsageBillingDbContext>().UseSqlite(ConnectionString).Options)
        : new PostgresUsageBillingDbContext(new DbContextOptionsBuilder<PostgresUsageBillingDbContext>().UseNpgsql(ConnectionString).Options);
}
