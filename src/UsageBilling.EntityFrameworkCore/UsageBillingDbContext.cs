using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage.ValueConversion;
using UsageBilling.EntityFrameworkCore.Entities;

namespace UsageBilling.EntityFrameworkCore;

/// <summary>
/// A ready-made context for apps without a user table of their own (and for the CLI, samples and
/// tests): a minimal <c>users</c> table plus the UsageBilling tables. Apps with their own users
/// (ASP.NET Core Identity) call <see cref="UsageBillingModelBuilderExtensions.ApplyUsageBillingModel{TUser}"/>
/// in their own context instead. Use the provider subclasses, which carry the migrations.
/// </summary>
public abstract class UsageBillingDbContext : DbContext
{
    /// <summary>Creates the context.</summary>
    /// <param name="options">The context options.</param>
    protected UsageBillingDbContext(DbContextOptions options)
        : base(options)
    {
    }

    /// <summary>The users.</summary>
    public DbSet<BillingUser> Users => Set<BillingUser>();

    /// <summary>The usage buffer.</summary>
    public DbSet<UsageEvent> UsageEvents => Set<UsageEvent>();

    /// <summary>The hourly rollup of the usage buffer, which summaries read.</summary>
    public DbSet<UsageHourly> UsageHourly => Set<UsageHourly>();

    /// <summary>The daily rollup of the usage buffer, which summaries read.</summary>
    public DbSet<UsageDaily> UsageDaily => Set<UsageDaily>();

    /// <summary>Recorded usage per account, meter and billing period, which limits are enforced against.</summary>
    public DbSet<UsagePeriodTotal> UsagePeriodTotals => Set<UsagePeriodTotal>();

    /// <summary>Accounts' own caps and alert thresholds.</summary>
    public DbSet<UsageAccountLimit> UsageAccountLimits => Set<UsageAccountLimit>();

    /// <summary>The usage alert outbox.</summary>
    public DbSet<UsageAlertRecord> UsageAlerts => Set<UsageAlertRecord>();

    /// <summary>The reports sent (or to send) to Stripe.</summary>
    public DbSet<UsageReport> UsageReports => Set<UsageReport>();

    /// <summary>API keys of the HTTP ingestion endpoint (hashed).</summary>
    public DbSet<UsageApiKey> UsageApiKeys => Set<UsageApiKey>();

    /// <summary>The audit (and outbox) of usage corrections.</summary>
    public DbSet<UsageCorrection> UsageCorrections => Set<UsageCorrection>();

    /// <summary>Users' Stripe customers.</summary>
    public DbSet<BillingCustomer> BillingCustomers => Set<BillingCustomer>();

    /// <summary>Subscription items and their periods.</summary>
    public DbSet<BillingSubscriptionItem> SubscriptionItems => Set<BillingSubscriptionItem>();

    /// <summary>Stripe webhook events already applied.</summary>
    public DbSet<ProcessedWebhookEvent> ProcessedWebhookEvents => Set<ProcessedWebhookEvent>();

    /// <inheritdoc />
    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);
        modelBuilder.Entity<BillingUser>(e =>
        {
            e.ToTable("users");
            e.HasKey(x => x.Id).HasName("pk_users");
            e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(x => x.Email).HasColumnName("email").HasMaxLength(320);
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
        });
        modelBuilder.ApplyUsageBillingModel<BillingUser>();
    }
}

/// <summary>The SQLite flavour of <see cref="UsageBillingDbContext"/> (carries the SQLite migrations).</summary>
/// <param name="options">The context options.</param>
public sealed class SqliteUsageBillingDbContext(DbContextOptions<SqliteUsageBillingDbContext> options) : UsageBillingDbContext(options)
{
    /// <inheritdoc />
    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder) =>
        configurationBuilder.UseUsageBillingSqliteConventions();
}

/// <summary>The PostgreSQL flavour of <see cref="UsageBillingDbContext"/> (carries the PostgreSQL migrations).</summary>
/// <param name="options">The context options.</param>
public sealed class PostgresUsageBillingDbContext(DbContextOptions<PostgresUsageBillingDbContext> options) : UsageBillingDbContext(options);

/// <summary>Conventions a SQLite context needs for UsageBilling's queries.</summary>
public static class UsageBillingSqliteConventions
{
    /// <summary>
    /// Stores every <see cref="DateTimeOffset"/> as INTEGER microseconds since the Unix epoch (UTC), so
    /// SQLite compares, sorts and indexes times correctly (EF's default TEXT form does not order
    /// across offsets and cannot be compared in queries).
    /// </summary>
    /// <param name="configurationBuilder">The context's convention builder.</param>
    /// <returns>The same builder.</returns>
    public static ModelConfigurationBuilder UseUsageBillingSqliteConventions(this ModelConfigurationBuilder configurationBuilder)
    {
        ArgumentNullException.ThrowIfNull(configurationBuilder);
        configurationBuilder.Properties<DateTimeOffset>().HaveConversion<UnixMicrosecondsConverter>();
        return configurationBuilder;
    }

    /// <summary>Microseconds since the Unix epoch of an instant.</summary>
    /// <param name="value">The instant.</param>
    /// <returns>Microseconds.</returns>
    public static long ToUnixMicroseconds(DateTimeOffset value) => (value.UtcTicks - DateTimeOffset.UnixEpoch.UtcTicks) / 10;

    /// <summary>The instant of a microseconds-since-epoch value.</summary>
    /// <param name="value">Microseconds.</param>
    /// <returns>The instant, UTC.</returns>
    public static DateTimeOffset FromUnixMicroseconds(long value) => new(DateTimeOffset.UnixEpoch.UtcTicks + (value * 10), TimeSpan.Zero);

    private sealed class UnixMicrosecondsConverter() : ValueConverter<DateTimeOffset, long>(
        v => ToUnixMicroseconds(v),
        v => FromUnixMicroseconds(v));
}
