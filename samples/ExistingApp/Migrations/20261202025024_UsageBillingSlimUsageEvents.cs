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
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
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
