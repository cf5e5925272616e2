using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace UsageBilling.EntityFrameworkCore.Migrations.Postgres
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
                type: "character varying(128)",
                maxLength: 128,
                nullable: true);

            migrationBuilder.MoveRequestFingerprintsToKeys();

            migrationBuilder.DropColumn(
                name: "request_fingerprint",
                table: "usage_events");

            // The summary's index no longer covers quantity and report_id (27 bytes per event) nor is keyed by meter
            // (18 bytes per event).
            migrationBuilder.DropIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at" });

            // Empty partitions made again without the dropped column's place in every row.
            migrationBuilder.RecreateEmptyUsageEventPartitions();
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events");

            migrationBuilder.AddColumn<string>(
                name: "request_fingerprint",
                table: "usage_events",
                type: "character varying(128)",
                maxLength: 128,
                nullable: true);

            migrationBuilder.MoveRequestFingerprintsToEvents();

            migrationBuilder.DropColumn(
                name: "request_fingerprint",
                table: "usage_event_keys");

            migrationBuilder.CreateIndex(
                name: "ix_usage_events_user_time",
                table: "usage_events",
                columns: new[] { "user_id", "occurred_at", "meter" })
                .Annotation("Npgsql:IndexInclude", new[] { "quantity", "report_id" });
        }
    }
}
