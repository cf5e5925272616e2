using Microsoft.EntityFrameworkCore;
using UsageBilling.EntityFrameworkCore.Entities;
using UsageBilling.Storage;

namespace UsageBilling.EntityFrameworkCore;

/// <summary>Maps the UsageBilling tables into any DbContext, tied to the app's own user entity.</summary>
public static class UsageBillingModelBuilderExtensions
{
    /// <summary>
    /// Maps <c>usage_events</c>, <c>usage_event_keys</c>, <c>usage_hourly</c>, <c>usage_daily</c>, <c>usage_period_totals</c>, <c>usage_account_limits</c>,
    /// <c>usage_alerts</c>, <c>usage_reports</c>, <c>usage_api_keys</c>, <c>usage_corrections</c>, <c>billing_customers</c>, <c>billing_subscription_items</c> and
    /// <c>stripe_webhook_events</c>, with foreign keys (cascade delete) to <typeparamref name="TUser"/>,
    /// whose primary key must be a single <see cref="Guid"/> (ASP.NET Core Identity with Guid keys fits).
    /// </summary>
    /// <typeparam name="TUser">The app's user entity.</typeparam>
    /// <param name="modelBuilder">The model builder of the app's context.</param>
    /// <returns>The same model builder.</returns>
    public static ModelBuilder ApplyUsageBillingModel<TUser>(this ModelBuilder modelBuilder)
        where TUser : class
    {
        ArgumentNullException.ThrowIfNull(modelBuilder);

        modelBuilder.Entity<UsageEvent>(e =>
        {
            e.ToTable("usage_events", t => t.HasCheckConstraint("ck_usage_events_quantity", "quantity >= 1"));
            e.HasKey(x => x.Id).HasName("pk_usage_events");
            e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
            e.Property(x => x.Quantity).HasColumnName("quantity");
            e.Property(x => x.OccurredAt).HasColumnName("occurred_at");
            e.Property(x => x.IdempotencyKey).HasColumnName("idempotency_key").HasMaxLength(255);
            e.Property(x => x.ReportId).HasColumnName("report_id");
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_usage_events_user");

            // Serves the summary: one user's range (the ragged hours at a range's edges, the folded days' events).
            // Neither covering nor keyed by meter: the rows it finds are read from the heap (in recording order, among
            // other accounts' rows) for their quantity, and a query of one meter drops the others' rows there. Covering
            // quantity and report_id cost 27 bytes per event and bought 0.1-0.3 ms of the heavy summary's p99; the
            // meter key cost 18 bytes per event (docs/benchmarks.md).
            e.HasIndex(x => new { x.UserId, x.OccurredAt }).HasDatabaseName("ix_usage_events_user_time");

            // Serves the claim: unassigned events only, oldest first; shrinks as events are claimed.
            e.HasIndex(x => x.CreatedAt).HasFilter("report_id IS NULL").HasDatabaseName("ix_usage_events_unclaimed");
            e.HasIndex(x => x.ReportId).HasDatabaseName("ix_usage_events_report");
        });

        // The idempotency keys' uniqueness, out of usage_events so that table can be partitioned by month.
        modelBuilder.Entity<UsageEventKey>(e =>
        {
            e.ToTable("usage_event_keys");
            e.HasKey(x => new { x.UserId, x.IdempotencyKey }).HasName("pk_usage_event_keys");
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.IdempotencyKey).HasColumnName("idempotency_key").HasMaxLength(255);
            e.Property(x => x.EventId).HasColumnName("event_id");
            e.Property(x => x.RequestFingerprint).HasColumnName("request_fingerprint").HasMaxLength(128);
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_usage_event_keys_user");
        });

        // The rollups the summaries read: whole days, the whole hours of the ragged days, and only the
        // ragged hours from usage_events. Key order serves the summary: one user's buckets in a range.
        modelBuilder.Entity<UsageHourly>(e =>
        {
            e.ToTable("usage_hourly");
            e.HasKey(x => new { x.UserId, x.Hour, x.Meter }).HasName("pk_usage_hourly");
            e.Property(x => x.Hour).HasColumnName("hour");
            MapRollup<TUser, UsageHourly>(e, "usage_hourly");
        });

        modelBuilder.Entity<UsageDaily>(e =>
        {
            e.ToTable("usage_daily");
            e.HasKey(x => new { x.UserId, x.Day, x.Meter }).HasName("pk_usage_daily");
            e.Property(x => x.Day).HasColumnName("day");
            e.Property(x => x.HoursFolded).HasColumnName("hours_folded").HasDefaultValue(false);

            // The closed days retention may still fold (few of them: a day is folded once, or stays dense).
            e.HasIndex(x => new { x.Day, x.UserId, x.Meter }).HasDatabaseName("ix_usage_daily_unfolded").HasFilter("NOT hours_folded");
            MapRollup<TUser, UsageDaily>(e, "usage_daily");
        });

        // Spend control: the period totals every recording transaction locks and checks, the
        // accounts' own caps and thresholds, and the alert outbox.
        modelBuilder.Entity<UsagePeriodTotal>(e =>
        {
            e.ToTable("usage_period_totals");
            e.HasKey(x => new { x.UserId, x.Meter, x.PeriodStart }).HasName("pk_usage_period_totals");
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
            e.Property(x => x.PeriodStart).HasColumnName("period_start");
            e.Property(x => x.PeriodEnd).HasColumnName("period_end");
            e.Property(x => x.Quantity).HasColumnName("quantity");
            e.Property(x => x.EventCount).HasColumnName("event_count");
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_usage_period_totals_user");
            e.HasStorageParameter("fillfactor", 70);
        });

        modelBuilder.Entity<UsageAccountLimit>(e =>
        {
            e.ToTable("usage_account_limits");
            e.HasKey(x => new { x.UserId, x.Meter }).HasName("pk_usage_account_limits");
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
            e.Property(x => x.SpendCap).HasColumnName("spend_cap").HasPrecision(18, 6);
            e.Property(x => x.QuantityCap).HasColumnName("quantity_cap");
            e.Property(x => x.AlertThresholds).HasColumnName("alert_thresholds").HasMaxLength(2000);
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_usage_account_limits_user");
        });

        modelBuilder.Entity<UsageAlertRecord>(e =>
        {
            e.ToTable("usage_alerts");
            e.HasKey(x => x.Id).HasName("pk_usage_alerts");
            e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
            e.Property(x => x.PeriodStart).HasColumnName("period_start");
            e.Property(x => x.PeriodEnd).HasColumnName("period_end");
            e.Property(x => x.Threshold).HasColumnName("threshold").HasMaxLength(100).IsRequired();
            e.Property(x => x.Used).HasColumnName("used");
            e.Property(x => x.Amount).HasColumnName("amount").HasPrecision(18, 6);
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.DeliveredAt).HasColumnName("delivered_at");
            e.Property(x => x.Attempts).HasColumnName("attempts");
            e.Property(x => x.NextAttemptAt).HasColumnName("next_attempt_at");
            e.Property(x => x.LeaseOwner).HasColumnName("lease_owner").HasMaxLength(100);
            e.Property(x => x.LeaseExpiresAt).HasColumnName("lease_expires_at");
            e.Property(x => x.LastError).HasColumnName("last_error").HasMaxLength(2000);
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_usage_alerts_user");

            // Exactly once per account·meter·period·threshold, whatever the concurrency.
            e.HasIndex(x => new { x.UserId, x.Meter, x.PeriodStart, x.Threshold }).IsUnique().HasDatabaseName("ux_usage_alerts_threshold");
            e.HasIndex(x => x.NextAttemptAt).HasFilter("delivered_at IS NULL").HasDatabaseName("ix_usage_alerts_due");
        });

        modelBuilder.Entity<UsageReport>(e =>
        {
            e.ToTable("usage_reports");
            e.HasKey(x => x.Id).HasName("pk_usage_reports");
            e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(x => x.StripeCustomerId).HasColumnName("stripe_customer_id").HasMaxLength(255).IsRequired();
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
            e.Property(x => x.Quantity).HasColumnName("quantity");
            e.Property(x => x.EventCount).HasColumnName("event_count");
            e.Property(x => x.Timestamp).HasColumnName("timestamp");
            e.Property(x => x.PeriodStart).HasColumnName("period_start");
            e.Property(x => x.PeriodEnd).HasColumnName("period_end");
            e.Property(x => x.Status).HasColumnName("status").HasMaxLength(20).HasConversion(
                v => StatusToText(v),
                v => TextToStatus(v));
            e.Property(x => x.Attempts).HasColumnName("attempts");
            e.Property(x => x.NextAttemptAt).HasColumnName("next_attempt_at");
            e.Property(x => x.FirstAttemptAt).HasColumnName("first_attempt_at");
            e.Property(x => x.LastError).HasColumnName("last_error").HasMaxLength(2000);
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.SentAt).HasColumnName("sent_at");
            e.Property(x => x.LeaseOwner).HasColumnName("lease_owner").HasMaxLength(100);
            e.Property(x => x.LeaseExpiresAt).HasColumnName("lease_expires_at");
            e.HasIndex(x => new { x.Status, x.NextAttemptAt }).HasDatabaseName("ix_usage_reports_due");
            e.HasIndex(x => new { x.StripeCustomerId, x.Meter, x.PeriodStart }).HasDatabaseName("ix_usage_reports_customer_meter_period");
        });

        modelBuilder.Entity<UsageApiKey>(e =>
        {
            e.ToTable("usage_api_keys");
            e.HasKey(x => x.Id).HasName("pk_usage_api_keys");
            e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(x => x.Name).HasColumnName("name").HasMaxLength(200).IsRequired();
            e.Property(x => x.Prefix).HasColumnName("prefix").HasMaxLength(32).IsRequired();
            e.Property(x => x.SecretHash).HasColumnName("secret_hash").HasMaxLength(64).IsRequired();
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.RevokedAt).HasColumnName("revoked_at");
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_usage_api_keys_user");
            e.HasIndex(x => x.SecretHash).IsUnique().HasDatabaseName("ux_usage_api_keys_secret_hash");
        });

        // The audit of corrections outlives the events it describes (no foreign key: it is kept when the user goes).
        modelBuilder.Entity<UsageCorrection>(e =>
        {
            e.ToTable("usage_corrections");
            e.HasKey(x => x.Id).HasName("pk_usage_corrections");
            e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.EventId).HasColumnName("event_id");
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
            e.Property(x => x.Quantity).HasColumnName("quantity");
            e.Property(x => x.OccurredAt).HasColumnName("occurred_at");
            e.Property(x => x.IdempotencyKey).HasColumnName("idempotency_key").HasMaxLength(255);
            e.Property(x => x.Kind).HasColumnName("kind").HasMaxLength(20).IsRequired();
            e.Property(x => x.ReportId).HasColumnName("report_id");
            e.Property(x => x.CorrectionReportId).HasColumnName("correction_report_id");
            e.Property(x => x.Status).HasColumnName("status").HasMaxLength(20).IsRequired();
            e.Property(x => x.Actor).HasColumnName("actor").HasMaxLength(200).IsRequired();
            e.Property(x => x.Reason).HasColumnName("reason").HasMaxLength(2000).IsRequired();
            e.Property(x => x.Attempts).HasColumnName("attempts");
            e.Property(x => x.NextAttemptAt).HasColumnName("next_attempt_at");
            e.Property(x => x.LeaseOwner).HasColumnName("lease_owner").HasMaxLength(100);
            e.Property(x => x.LeaseExpiresAt).HasColumnName("lease_expires_at");
            e.Property(x => x.LastError).HasColumnName("last_error").HasMaxLength(2000);
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.CompletedAt).HasColumnName("completed_at");
            e.HasIndex(x => new { x.Status, x.NextAttemptAt }).HasDatabaseName("ix_usage_corrections_due");
            e.HasIndex(x => new { x.UserId, x.CreatedAt }).HasDatabaseName("ix_usage_corrections_user");
        });

        modelBuilder.Entity<BillingCustomer>(e =>
        {
            e.ToTable("billing_customers");
            e.HasKey(x => x.UserId).HasName("pk_billing_customers");
            e.Property(x => x.UserId).HasColumnName("user_id").ValueGeneratedNever();
            e.Property(x => x.StripeCustomerId).HasColumnName("stripe_customer_id").HasMaxLength(255).IsRequired();
            e.Property(x => x.PlanId).HasColumnName("plan_id").HasMaxLength(100);
            e.Property(x => x.CreatedAt).HasColumnName("created_at");
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
            e.HasOne<TUser>().WithOne().HasForeignKey<BillingCustomer>(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_billing_customers_user");
            e.HasIndex(x => x.StripeCustomerId).IsUnique().HasDatabaseName("ux_billing_customers_stripe_customer");
        });

        modelBuilder.Entity<BillingSubscriptionItem>(e =>
        {
            e.ToTable("billing_subscription_items");
            e.HasKey(x => x.Id).HasName("pk_billing_subscription_items");
            e.Property(x => x.Id).HasColumnName("id").HasMaxLength(255).ValueGeneratedNever();
            e.Property(x => x.SubscriptionId).HasColumnName("subscription_id").HasMaxLength(255).IsRequired();
            e.Property(x => x.UserId).HasColumnName("user_id");
            e.Property(x => x.PriceId).HasColumnName("price_id").HasMaxLength(255).IsRequired();
            e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100);
            e.Property(x => x.Status).HasColumnName("status").HasMaxLength(40).IsRequired();
            e.Property(x => x.CurrentPeriodStart).HasColumnName("current_period_start");
            e.Property(x => x.CurrentPeriodEnd).HasColumnName("current_period_end");
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
            e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName("fk_billing_subscription_items_user");
            e.HasIndex(x => new { x.UserId, x.Meter }).HasDatabaseName("ix_billing_subscription_items_user_meter");
        });

        modelBuilder.Entity<ProcessedWebhookEvent>(e =>
        {
            e.ToTable("stripe_webhook_events");
            e.HasKey(x => x.Id).HasName("pk_stripe_webhook_events");
            e.Property(x => x.Id).HasColumnName("id").HasMaxLength(255).ValueGeneratedNever();
            e.Property(x => x.Type).HasColumnName("type").HasMaxLength(255).IsRequired();
            e.Property(x => x.ProcessedAt).HasColumnName("processed_at");
        });

        return modelBuilder;
    }

    // Every recorder batch and acknowledgement updates these rows' counters, never their key: with
    // room left on each page (fillfactor 70) PostgreSQL updates them in place (HOT), without index
    // writes. No other index for the same reason: the summary reads ~100 rows through the key.
    private static void MapRollup<TUser, TRow>(Microsoft.EntityFrameworkCore.Metadata.Builders.EntityTypeBuilder<TRow> e, string table)
        where TUser : class
        where TRow : UsageRollupRow
    {
        e.Property(x => x.UserId).HasColumnName("user_id");
        e.Property(x => x.Meter).HasColumnName("meter").HasMaxLength(100).IsRequired();
        e.Property(x => x.Quantity).HasColumnName("quantity");
        e.Property(x => x.EventCount).HasColumnName("event_count");
        e.Property(x => x.ReportedQuantity).HasColumnName("reported_quantity");
        e.Property(x => x.ReportedCount).HasColumnName("reported_count");
        e.Property(x => x.LastReportedAt).HasColumnName("last_reported_at");
        e.HasOne<TUser>().WithMany().HasForeignKey(x => x.UserId).OnDelete(DeleteBehavior.Cascade).HasConstraintName($"fk_{table}_user");
        e.HasStorageParameter("fillfactor", 70);
    }

    /// <summary>The text stored for a report status.</summary>
    /// <param name="status">The status.</param>
    /// <returns>Its snake_case name.</returns>
    public static string StatusToText(UsageReportStatus status) => status switch
    {
        UsageReportStatus.Pending => "pending",
        UsageReportStatus.Sent => "sent",
        UsageReportStatus.Dead => "dead",
        UsageReportStatus.NeedsReview => "needs_review",
        UsageReportStatus.Canceled => "canceled",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "Unknown report status."),
    };

    /// <summary>The report status of its stored text.</summary>
    /// <param name="text">The stored text.</param>
    /// <returns>The status.</returns>
    public static UsageReportStatus TextToStatus(string text) => text switch
    {
        "pending" => UsageReportStatus.Pending,
        "sent" => UsageReportStatus.Sent,
        "dead" => UsageReportStatus.Dead,
        "needs_review" => UsageReportStatus.NeedsReview,
        "canceled" => UsageReportStatus.Canceled,
        _ => throw new ArgumentOutOfRangeException(nameof(text), text, "Unknown report status."),
    };
}
