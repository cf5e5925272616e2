using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore;

namespace ExistingApp;

/// <summary>A customer account of the app, on the flat-rate plan once subscribed.</summary>
public sealed class Account
{
    public Guid Id { get; set; }

    public string Email { get; set; } = "";

    public string? StripeCustomerId { get; set; }

    public string? StripeSubscriptionId { get; set; }
}

/// <summary>The app's own database, now holding UsageBilling's tables too.</summary>
public sealed class AppDbContext(DbContextOptions<AppDbContext> options) : DbContext(options)
{
    public DbSet<Account> Accounts => Set<Account>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Account>(e =>
        {
            e.ToTable("accounts");
            e.HasIndex(a => a.Email).IsUnique();
        });
        modelBuilder.ApplyUsageBillingModel<Account>();
    }

    protected override void ConfigureConventions(ModelConfigurationBuilder configurationBuilder) =>
        configurationBuilder.UseUsageBillingSqliteConventions();
}
