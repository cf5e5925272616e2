using System;
using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;

#nullable disable

namespace ExistingApp.Migrations
{
    /// <inheritdoc />
    public partial class AddUsageBilling : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "billing_customers",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    stripe_customer_id = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    plan_id = table.Column<string>(type: "TEXT", maxLength: 100, nullable: true),
                    created_at = table.Column<long>(type: "INTEGER", nullable: false),
                    updated_at = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_billing_customers", x => x.user_id);
                    table.ForeignKey(
                        name: "fk_billing_customers_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "billing_subscription_items",
                columns: table => new
                {
                    id = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    subscription_id = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    price_id = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: true),
                    status = table.Column<string>(type: "TEXT", maxLength: 40, nullable: false),
                    current_period_start = table.Column<long>(type: "INTEGER", nullable: false),
                    current_period_end = table.Column<long>(type: "INTEGER", nullable: false),
                    updated_at = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_billing_subscription_items", x => x.id);
                    table.ForeignKey(
                        name: "fk_billing_subscription_items_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_daily",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    day = table.Column<long>(type: "INTEGER", nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    event_count = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_count = table.Column<long>(type: "INTEGER", nullable: false),
                    last_reported_at = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_daily", x => new { x.user_id, x.day, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_daily_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_events",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "TEXT", nullable: false),
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    occurred_at = table.Column<long>(type: "INTEGER", nullable: false),
                    idempotency_key = table.Column<string>(type: "TEXT", maxLength: 255, nullable: true),
                    report_id = table.Column<Guid>(type: "TEXT", nullable: true),
                    reported_at = table.Column<long>(type: "INTEGER", nullable: true),
                    created_at = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_events", x => x.id);
                    table.CheckConstraint("ck_usage_events_quantity", "quantity >= 1");
                    table.ForeignKey(
                        name: "fk_usage_events_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_hourly",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    hour = table.Column<long>(type: "INTEGER", nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    event_count = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    reported_count = table.Column<long>(type: "INTEGER", nullable: false),
                    last_reported_at = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_hourly", x => new { x.user_id, x.hour, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_hourly_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_reports",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "TEXT", nullable: false),
                    stripe_customer_id = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    event_count = table.Column<int>(type: "INTEGER", nullable: false),
                    timestamp = table.Column<long>(type: "INTEGER", nullable: false),
                    period_start = table.Column<long>(type: "INTEGER", nullable: false),
                    period_end = table.Column<long>(type: "INTEGER", nullable: false),
                    status = table.Column<string>(type: "TEXT", maxLength: 20, nullable: false),
                    attempts = table.Column<int>(type: "INTEGER", nullable: false),
                    next_attempt_at = table.Column<long>(type: "INTEGER", nullable: false),
                    first_attempt_at = table.Column<long>(type: "INTEGER", nullable: true),
                    last_error = table.Column<string>(type: "TEXT", maxLength: 2000, nullable: true),
                    created_at = table.Column<long>(type: "INTEGER", nullable: false),
                    sent_at = table.Column<long>(type: "INTEGER", nullable: true),
                    lease_owner = table.Column<string>(type: "TEXT", maxLength: 100, nullable: true),
                    lease_expires_at = table.Column<long>(type: "INTEGER", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_reports", x => x.id);
                });

            migrationBuilder.CreateIndex(
                name: "ux_billing_customers_stripe_customer",
                table: "billing_customers",
                column: "stripe_customer_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_billing_subscription_items_user_meter",
                table: "billing_subscription_items",
                columns: new[] { "user_id", "meter" });

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_report",
                table: "usage_events",
                column: "report_id");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_unclaimed",
                table: "usage_events",
                column: "created_at",
                filter: "report_id IS NULL");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at", "meter" });

            migrationBuilder.CreateIndex(
                name: "ux_usage_events_user_key",
                table: "usage_events",
                columns: new[] { "user_id", "idempotency_key" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_usage_reports_customer_meter_period",
                table: "usage_reports",
                columns: new[] { "stripe_customer_id", "meter", "period_start" });

            migrationBuilder.CreateIndex(
                name: "ix_usage_reports_due",
                table: "usage_reports",
                columns: new[] { "status", "next_attempt_at" });

            // The one line added by hand: fills the usage rollups from events already stored (none on a first adoption).
            migrationBuilder.BackfillUsageRollups();
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "billing_customers");

            migrationBuilder.DropTable(
                name: "billing_subscription_items");

            migrationBuilder.DropTable(
                name: "usage_daily");

            migrationBuilder.DropTable(
                name: "usage_events");

            migrationBuilder.DropTable(
                name: "usage_hourly");

            migrationBuilder.DropTable(
                name: "usage_reports");
        }
    }
}
