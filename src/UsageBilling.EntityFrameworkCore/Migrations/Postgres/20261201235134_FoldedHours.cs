using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace UsageBilling.EntityFrameworkCore.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class FoldedHours : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<bool>(
                name: "hours_folded",
                table: "usage_daily",
                type: "boolean",
                nullable: false,
                defaultValue: false);

            migrationBuilder.CreateIndex(
                name: "ix_usage_daily_unfolded",
                table: "usage_daily",
                columns: new[] { "day", "user_id", "meter" },
                filter: "NOT hours_folded");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            // Folded days get their hourly rows back first: the code before this migration reads them.
            migrationBuilder.UnfoldUsageHours();

            migrationBuilder.DropIndex(
                name: "ix_usage_daily_unfolded",
                table: "usage_daily");

            migrationBuilder.DropColumn(
                name: "hours_folded",
                table: "usage_daily");
        }
    }
}
