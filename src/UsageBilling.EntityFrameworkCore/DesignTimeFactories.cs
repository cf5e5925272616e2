using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace UsageBilling.EntityFrameworkCore;

/// <summary>Lets <c>dotnet ef migrations add … --context SqliteUsageBillingDbContext</c> build the SQLite model.</summary>
internal sealed class SqliteDesignTimeFactory : IDesignTimeDbContextFactory<SqliteUsageBillingDbContext>
{
    public SqliteUsageBillingDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<SqliteUsageBillingDbContext>().UseSqlite("Data Source=design.db").Options);
}

/// <summary>Lets <c>dotnet ef migrations add … --context PostgresUsageBillingDbContext</c> build the PostgreSQL model.</summary>
internal sealed class PostgresDesignTimeFactory : IDesignTimeDbContextFactory<PostgresUsageBillingDbContext>
{
    public PostgresUsageBillingDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<PostgresUsageBillingDbContext>().UseNpgsql("Host=127.0.0.1;Database=design").Options);
}
