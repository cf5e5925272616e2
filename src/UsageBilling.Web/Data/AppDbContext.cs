using Microsoft.AspNetCore.Identity;
using Microsoft.AspNetCore.Identity.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;

namespace UsageBilling.Web.Data;

/// <summary>An account of the app: an ASP.NET Core Identity user with a Guid key.</summary>
public sealed class AppUser : IdentityUser<Guid>
{
    /// <summary>When the account was created.</summary>
    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>
/// The app's one database: Identity's tables, the UsageBilling tables (tied to <see cref="AppUser"/>
/// with cascade delete) and the webhook dedup table. Use the provider subclasses, which carry the migrations.
/// </summary>
public abstract class AppDbContext : IdentityDbContext<AppUser, IdentityRole<Guid>, Guid>
{
    /// <summary>Creates the context.</summary>
    /// <param name="options">The context options.</param>
    protected AppDbContext(DbContextOptions options)
        : base(options)
    {
    }

    /// <summary>Users' Stripe customers and plans.</summary>
    public DbSet<BillingCustomer> BillingCustomers => Set<BillingCustomer>();

    /// <summary>Subscription items and their current periods.</summary>
    public DbSet<BillingSubscriptionItem> SubscriptionItems => Set<BillingSubscriptionItem>();

    /// <summary>The usage buffer.</summary>
    public DbSet<UsageEvent> UsageEvents => Set<UsageEvent>();

    /// <summary>The reports sent (or to send) to Stripe.</summary>
    public DbSet<UsageReport> UsageReports => Set<UsageReport>();

    /// <summary>Webhook events already handled.</summary>
    public DbSet<ProcessedWebhookEvent> ProcessedWebhookEvents => Set<ProcessedWebhookEvent>();

    /// <inheritdoc />
    protected override void OnModelCreating(ModelBuilder builder)
    {
        base.OnModelCreating(builder);
        builder.ApplyUsageBillingModel<AppUser>();
    }
}

/// <summary>The SQLite flavour of <see cref="AppDbContext"/> (carries the SQLite migrations).</summary>
/// <param name="options">The context options.</param>
public sealed class SqliteAppDbContext(DbContextOptions<SqliteAppDbContext> options) : AppDbContext(options)
{
    /// <inheritdoc />
    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder) =>
        configurationBuilder.UseUsageBillingSqliteConventions();
}

/// <summary>The PostgreSQL flavour of <see cref="AppDbContext"/> (carries the PostgreSQL migrations).</summary>
/// <param name="options">The context options.</param>
public sealed class PostgresAppDbContext(DbContextOptions<PostgresAppDbContext> options) : AppDbContext(options);
