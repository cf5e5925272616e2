using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;

#nullable disable

namespace ExistingApp.Migrations
{
    /// <inheritdoc />
    public partial class UsageBillingAcknowledgedByReport : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            // Before the stamps go: the rollups' acknowledged columns follow the reports' status from now on.
            migrationBuilder.AcknowledgeUsageByReport();

            // SQLite's own DROP COLUMN (the column is in no index here), not EF's table rebuild: the rebuild commits in
            // steps of its own, so a crash between them left a database this migration could not run on again.
            migrationBuilder.Sql("ALTER TABLE usage_events DROP COLUMN reported_at;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "reported_at",
                table: "usage_events",
                type: "INTEGER",
                nullable: true);

            // Stamps the events again from their reports (the rollups already agree with the reports).
            migrationBuilder.Sql("UPDATE usage_events SET reported_at = (SELECT r.sent_at FROM usage_reports r WHERE r.id = usage_events.report_id AND r.status = 'sent') WHERE report_id IS NOT NULL;");
        }
    }
}
