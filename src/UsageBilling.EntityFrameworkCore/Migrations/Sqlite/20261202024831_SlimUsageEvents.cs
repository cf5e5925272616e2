using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace UsageBilling.EntityFrameworkCore.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class SlimUsageEvents : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // The fingerprint moves to the key it is bound to: keyless events carry no column for it.
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
