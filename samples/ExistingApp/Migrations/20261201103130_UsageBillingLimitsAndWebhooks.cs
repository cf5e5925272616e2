using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace ExistingApp.Migrations
{
    /// <inheritdoc />
    public partial class UsageBillingLimitsAndWebhooks : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "request_fingerprint",
                table: "usage_events",
                type: "TEXT",
                maxLength: 128,
                nullable: true);

            migrationBuilder.CreateTable(
                name: "stripe_webhook_events",
                columns: table => new
                {
                    id = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    type = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    processed_at = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_stripe_webhook_events", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "usage_account_limits",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    spend_cap = table.Column<decimal>(type: "TEXT", precision: 18, scale: 6, nullable: true),
                    quantity_cap = table.Column<long>(type: "INTEGER", nullable: true),
                    alert_thresholds = table.Column<string>(type: "TEXT", maxLength: 2000, nullable: true),
                    updated_at = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_account_limits", x => new { x.user_id, x.meter });
                    table.ForeignKey(
                        name: "fk_usage_account_limits_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_alerts",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "TEXT", nullable: false),
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    period_start = table.Column<long>(type: "INTEGER", nullable: false),
                    period_end = table.Column<long>(type: "INTEGER", nullable: false),
                    threshold = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    used = table.Column<long>(type: "INTEGER", nullable: false),
                    amount = table.Column<decimal>(type: "TEXT", precision: 18, scale: 6, nullable: false),
                    created_at = table.Column<long>(type: "INTEGER", nullable: false),
                    delivered_at = table.Column<long>(type: "INTEGER", nullable: true),
                    attempts = table.Column<int>(type: "INTEGER", nullable: false),
                    next_attempt_at = table.Column<long>(type: "INTEGER", nullable: false),
                    lease_owner = table.Column<string>(type: "TEXT", maxLength: 100, nullable: true),
                    lease_expires_at = table.Column<long>(type: "INTEGER", nullable: true),
                    last_error = table.Column<string>(type: "TEXT", maxLength: 2000, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_alerts", x => x.id);
                    table.ForeignKey(
                        name: "fk_usage_alerts_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "usage_period_totals",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    meter = table.Column<string>(type: "TEXT", maxLength: 100, nullable: false),
                    period_start = table.Column<long>(type: "INTEGER", nullable: false),
                    period_end = table.Column<long>(type: "INTEGER", nullable: false),
                    quantity = table.Column<long>(type: "INTEGER", nullable: false),
                    event_count = table.Column<long>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_period_totals", x => new { x.user_id, x.meter, x.period_start });
                    table.ForeignKey(
                        name: "fk_usage_period_totals_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ix_usage_alerts_due",
                table: "usage_alerts",
                column: "next_attempt_at",
                filter: "delivered_at IS NULL");

            migrationBuilder.CreateIndex(
                name: "ux_usage_alerts_threshold",
                table: "usage_alerts",
                columns: new[] { "user_id", "meter", "period_start", "threshold" },
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "stripe_webhook_events");

            migrationBuilder.DropTable(
                name: "usage_account_limits");

            migrationBuilder.DropTable(
                name: "usage_alerts");

            migrationBuilder.DropTable(
                name: "usage_period_totals");

            migrationBuilder.DropColumn(
                name: "request_fingerprint",
                table: "usage_events");
        }
    }
}
