using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;

#nullable disable

namespace ExistingApp.Migrations
{
    /// <inheritdoc />
    public partial class UsageBillingSlimUsageEvents : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(
                name: "request_fingerprint",
                table: "usage_event_keys",
                type: "TEXT",
                maxLength: 128,
                nullable: true);

            migrationBuilder.MoveRequestFingerprintsToKeys();

            // SQLite's own DROP COLUMN, not EF's table rebuild (steps that commit separately).
            migrationBuilder.Sql("ALTER TABLE usage_events DROP COLUMN request_fingerprint;");

            // The summary's index is no longer keyed by meter.
            migrationBuilder.DropIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at", "meter" });

            migrationBuilder.AddColumn<string>(
                name: "request_fingerprint",
                table: "usage_events",
                type: "TEXT",
                maxLength: 128,
                nullable: true);

            migrationBuilder.MoveRequestFingerprintsToEvents();

            migrationBuilder.Sql("ALTER TABLE usage_event_keys DROP COLUMN request_fingerprint;");
        }
    }
}
